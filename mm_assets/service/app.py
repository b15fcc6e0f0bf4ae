"""`mm-assets serve`: search over HTTP (JSON in the CLI's result shape) and a web page at `/`.

One process keeps the models and serving matrices loaded and follows new builds of the vector tables
(the Searcher reopens the database when a rebuild replaces it). Model work and file decoding run in
worker threads, a few at a time, so the event loop only moves bytes. Media are served by chunk id
from the index, never by a path taken from the request.
"""

import secrets
import threading
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from mm_assets.config import Settings
from mm_assets.duplicates import list_duplicates
from mm_assets.encoders.identity import encoder_key
from mm_assets.formats import BadFile
from mm_assets.formats.reading import Boundary
from mm_assets.ingest.batches import read_manifest
from mm_assets.moderation import read_flags
from mm_assets.search.hits import SearchHit
from mm_assets.search.previews import NoMedia, render_chunk_media
from mm_assets.search.query import Searcher
from mm_assets.store.catalog import choose_encoder_table, chunk_lineage, media_chunk, table_counts
from mm_assets.store.duck import UnknownEncoder, VectorDBError

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_K = 200
# Embedding and decoding threads at once: more only queue up on a few cores and on one GPU.
WORKER_THREADS = 2


class SearchOptions:
    """The CLI's search options, as query parameters."""

    def __init__(
        self,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        modality: Annotated[str | None, Query(pattern="^(image|text|audio)$")] = None,
        encoder: str | None = None,
        context: Annotated[int, Query(ge=0, le=10)] = 0,
        group_by_file: bool = False,
        exact: bool = False,
        compact: Annotated[str | None, Query(pattern="^(int8|binary)$")] = None,
        calibrated: bool = True,
        hybrid: bool = False,
        dedup: bool = False,
    ):
        self.values = {
            "k": k,
            "modality": modality,
            "encoder": encoder,
            "context": context,
            "group_by_file": group_by_file,
            "exact": exact,
            "compact": compact,
            "calibrated": calibrated,
            "hybrid": hybrid,
            "dedup": dedup,
        }


Options = Annotated[SearchOptions, Depends()]


class Service:
    """The state behind the routes: one Searcher (its DuckDB connection is used by one thread at a
    time) and a limit on concurrent model and decoding work."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.searcher = Searcher(
            settings.db_path,
            settings.hnsw_ef_search,
            settings.max_image_pixels,
            settings.layout.calibrations,
            settings.layout.duplicate_pairs,
        )
        self.default_key = encoder_key(settings.default_encoder)
        self.lock = threading.Lock()
        self.limiter = anyio.CapacityLimiter(WORKER_THREADS)
        self._boundaries: dict[str, Boundary] = {}  # batch -> its source folders (manifests never change)

    async def run(self, fn, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def search(self, **query) -> list[dict]:
        with self.lock:
            return [h.as_dict() for h in self.searcher.search(default_key=self.default_key, **query)]

    def build(self) -> dict:
        with self.lock:
            tables = self.searcher.served.tables()
            counts = table_counts(self.searcher.served.connection())
            generation = self.searcher.served.generation()
        return {
            "database": str(self.settings.db_path),
            "generation": generation.number,
            "segments": len(generation.segments),
            "default_encoder": next((t.encoder_key for t in tables if t.encoder_key == self.default_key), None),
            "encoders": [
                {
                    **t.summary(),
                    "encoder_key": t.encoder_key,
                    "fingerprint": t.metadata.get("fingerprint"),
                    "modalities": t.metadata.get("modalities"),
                    "hnsw": t.has_hnsw,
                }
                for t in tables
            ],
            "counts": counts,
        }

    def flags(self, policy: str | None, limit: int) -> list[dict]:
        """The moderation policies' latest runs and their highest-scoring flags (`mm-assets flags`)."""
        with self.lock:
            return read_flags(self.settings.layout.flags, self.searcher.served.connection(), policy, limit)

    def duplicates(self, link: str | None, limit: int) -> list[dict]:
        """The largest duplicate groups (`mm-assets duplicates`)."""
        with self.lock:
            con = self.searcher.served.connection()
            return list_duplicates(con, self.settings.layout.duplicate_pairs, link)[:limit]

    def lineage(self, chunk_id: str, encoder: str | None) -> dict:
        with self.lock:
            found = chunk_lineage(self.searcher.served.connection(), chunk_id)
            tables = self.searcher.served.tables()
        if found is None:
            raise HTTPException(404, f"no chunk {chunk_id} in the index")
        table = choose_encoder_table(tables, encoder, self.default_key)
        m = table.metadata
        keys = ("model_id", "revision", "fingerprint", "dtype", "runtime", "device", "architecture")
        model = {k: m.get(k) for k in keys}
        return {**found, "encoder": table.name, "encoder_key": table.encoder_key, **model}

    def media(self, chunk_id: str):
        with self.lock:
            chunk = media_chunk(self.searcher.served.connection(), chunk_id)
        if chunk is None:
            raise HTTPException(404, f"no chunk {chunk_id} in the index")
        batch = chunk["batch"]
        if batch not in self._boundaries:
            self._boundaries[batch] = read_manifest(self.settings.layout, batch).boundary
        return render_chunk_media(
            chunk,
            boundary=self._boundaries[batch],
            max_pixels=self.settings.max_image_pixels,
            max_bytes=self.settings.max_file_bytes,
        )


def create_app(settings: Settings, token: str | None = None) -> FastAPI:
    service = Service(settings)
    app = FastAPI(
        title="mm_assets search",
        description="Cross-modal search over the vector tables: the same results as `mm-assets search --json`.",
        docs_url=None,  # Swagger UI loads from a CDN; the schema itself is at /openapi.json
        redoc_url=None,
    )
    app.state.service = service

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ") or request.query_params.get(
                "token", ""
            )
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(UnknownEncoder)
    async def unknown_encoder(_, exc: UnknownEncoder):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(VectorDBError)
    async def not_ready(_, exc: VectorDBError):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(BadFile)
    async def bad_upload(_, exc: BadFile):
        return JSONResponse({"detail": f"unreadable file: {exc}"}, status_code=400)

    @app.exception_handler(ValueError)
    async def bad_query(_, exc: ValueError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/api/search", response_model=list[SearchHit], summary="Search by text")
    async def search_text(q: Annotated[str, Query(min_length=1, max_length=2000)], options: Options):
        return await service.run(lambda: service.search(text=q, **options.values))

    @app.post("/api/search/image", response_model=list[SearchHit], summary="Search by an uploaded image")
    async def search_image(file: Annotated[UploadFile, File()], options: Options):
        data = await _read_upload(file)
        return await service.run(lambda: service.search(image=data, **options.values))

    @app.post("/api/search/audio", response_model=list[SearchHit], summary="Search by an uploaded audio clip")
    async def search_audio(file: Annotated[UploadFile, File()], options: Options):
        data = await _read_upload(file)
        return await service.run(lambda: service.search(audio=data, **options.values))

    @app.get("/api/similar/{chunk_id}", response_model=list[SearchHit], summary="More like this chunk")
    async def similar(chunk_id: str, options: Options):
        try:
            return await service.run(lambda: service.search(like=chunk_id, **options.values))
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    @app.get("/api/media/{chunk_id}", summary="The media of a hit: image region, PDF page, video frame, audio")
    async def media(chunk_id: str):
        try:
            found = await service.run(service.media, chunk_id)
        except NoMedia as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(found.data, media_type=found.media_type, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/lineage/{chunk_id}", summary="Where a hit came from: file, batch, encoder, model, revision")
    async def lineage(chunk_id: str, encoder: str | None = None):
        return await service.run(service.lineage, chunk_id, encoder)

    @app.get("/api/duplicates", summary="Duplicate groups (exact, near, semantic), largest first")
    async def duplicates(
        link: Annotated[str | None, Query(pattern="^(exact|near|semantic)$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
    ):
        return await service.run(service.duplicates, link, limit)

    @app.get("/api/flags", summary="Chunks flagged by the moderation policies, highest score first")
    async def flags(policy: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20):
        return await service.run(service.flags, policy, limit)

    @app.get("/api/build", summary="The build being served: encoders, fingerprints, row counts")
    async def build():
        return await service.run(service.build)

    @app.get("/api/health", summary="The process is up")
    async def health():
        return {"status": "ok"}

    @app.get("/api/ready", summary="A vector database is there and opens")
    async def ready():
        try:
            return {"status": "ready", **await service.run(service.build)}
        except VectorDBError as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _read_upload(file: UploadFile) -> bytes:
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"upload larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if not data:
        raise HTTPException(400, "empty upload")
    return data


def warm_up(app: FastAPI) -> None:
    """Load the default encoder's model and matrix before the first request, when a database exists."""
    service: Service = app.state.service
    try:
        service.search(text="warm up", k=1)
    except VectorDBError:
        pass  # no database yet: /api/ready says so, and the first build is picked up when it appears
