"""Random and mutated bytes under every supported extension: never a crash, always a reason."""

import io
import os

import dagster as dg
import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mm_assets.formats import SUPPORTED_EXTENSIONS
from mm_assets.ingest.discover import FoundFile
from mm_assets.ingest.inspect import inspect_file
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import INSPECT_LIMITS as LIMITS
from mm_assets_tests.helpers import db_rows, ingest_with_dagster

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]


def valid_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    gradient(40, 30, seed=1).save(buf, fmt)
    return buf.getvalue()


VALID = {fmt: valid_image(fmt) for fmt in FORMATS}


@st.composite
def mutated_images(draw) -> bytes:
    """A real image with bytes flipped, cut or inserted: what crashes decoders in practice."""
    data = bytearray(VALID[draw(st.sampled_from(FORMATS))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


def check(tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    row = inspect_file(FoundFile(str(path), len(data), 0), LIMITS)
    assert row["status"] in ("ok", "quarantined")
    assert (row["status"] == "quarantined") == bool(row["reason"])


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)), data=st.binary(max_size=2048))
def test_random_bytes_never_crash_ingest(tmp_path, ext, data):
    check(tmp_path, f"fuzz{ext}", data)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from(sorted(SUPPORTED_EXTENSIONS)), data=mutated_images())
def test_mutated_images_never_crash_ingest(tmp_path, ext, data):
    check(tmp_path, f"fuzz{ext}", data)


def test_a_batch_of_fuzzed_files_completes_end_to_end(settings, tmp_path):
    """Ingest, chunk and embed a folder of mutated files: the batch succeeds; each file is served or
    quarantined with a reason."""
    rng = np.random.default_rng(0)
    fuzz = settings.sources[0] / "fuzz"
    fuzz.mkdir()
    exts = sorted(SUPPORTED_EXTENSIONS)
    for i in range(60):
        data = bytearray(VALID[FORMATS[i % len(FORMATS)]])
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        (fuzz / f"f{i}{exts[i % len(exts)]}").write_bytes(bytes(data if i % 3 else rng.bytes(300)))
    with dg.instance_for_test() as instance:
        _, result = ingest_with_dagster(settings, instance)
    assert result.success

    served = {r[0] for r in db_rows(settings, "SELECT path FROM files")}
    quarantined = dict(db_rows(settings, "SELECT path, reason FROM quarantine"))
    for name in os.listdir(fuzz):
        path = str(fuzz / name)
        assert (path in served) != (path in quarantined), name
        assert path in served or quarantined[path]
