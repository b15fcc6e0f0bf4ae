"""`mm-assets`: run the pipeline on folders, search, and inspect, recording runs in the Dagster instance."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from pathlib import Path

from mm_assets.config import Settings
from mm_assets.config_loading import describe_settings, load_settings
from mm_assets.encoders.resolve import ModelNotFoundError
from mm_assets.formats import BadFile
from mm_assets.progress import listening
from mm_assets.store.duck import VectorDBError
from mm_assets.terminal import LiveProgress, quiet_libraries


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--config", default=default, help="settings file (default: $MM_ASSETS_CONFIG or ./mm_assets.yaml)"
    )
    parser.add_argument("--home", default=default, help="data folder for shards and the vectors (default: .mm_assets)")
    parser.add_argument(
        "--model", default=default, help="hub id or local directory for the default encoder (env MM_ASSETS_MODEL)"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mm-assets", description=__doc__)
    _global_options(p, None)
    # The same options after the subcommand (`mm-assets run --model DIR`); given there, they win.
    anywhere = argparse.ArgumentParser(add_help=False)
    _global_options(anywhere, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[anywhere])

    run = command("run", "discover new or changed files and materialize them end to end")
    run.add_argument("dirs", nargs="*", help="source folders (default: `sources:` from the settings)")
    run.add_argument(
        "--no-wait-duplicates",
        action="store_true",
        help="return once the new files are searchable; compare their duplicates in a background process "
        "(its log: HOME/logs/duplicates.log)",
    )

    search = command("search", "search the vector tables with a text, an image or an audio file")
    search.add_argument("text", nargs="?", help="text query")
    search.add_argument("--image", help="image file to search with")
    search.add_argument("--audio", help="audio file to search with (its first window), with an audio encoder")
    search.add_argument(
        "--like",
        metavar="PATH_OR_CHUNK",
        help="more like this served file or chunk (items like this one, with a fused --encoder)",
    )
    search.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--modality", choices=["image", "text", "audio"], help="only return chunks of this modality")
    search.add_argument("--encoder", help="encoder name or table key (default: the configured default encoder)")
    search.add_argument("--exact", action="store_true", help="brute force even when an HNSW index exists")
    search.add_argument(
        "--compact",
        choices=["int8", "binary"],
        help="shortlist with compact vectors (4x / 32x fewer bytes), then rank the shortlist exactly",
    )
    search.add_argument(
        "--hybrid",
        action="store_true",
        help="fuse with BM25 over the text chunks (finds rare words: codes, names, part numbers)",
    )
    search.add_argument(
        "--uncalibrated",
        action="store_true",
        help="over all modalities, rank by cosine (by default, by scores calibrated per modality pair)",
    )
    search.add_argument("--context", type=int, default=0, metavar="N", help="show N chunks before and after each hit")
    search.add_argument("--group-by-file", action="store_true", help="one result per file, at its best chunk")
    search.add_argument(
        "--dedup", action="store_true", help="one result per duplicate group (`mm-assets duplicates`), its best"
    )
    search.add_argument("--json", action="store_true", help="print a JSON list")

    status = command("status", "what is ingested, embedded and quarantined")
    status.add_argument("--json", action="store_true")

    evaluate = command("eval", "retrieval quality of every encoder on the held-out captioned images")
    evaluate.add_argument("--json", action="store_true", help="print one object per encoder and task")

    flags = command("flags", "chunks flagged by the moderation policies (`policies:` in the settings)")
    flags.add_argument("--policy", help="one policy (default: all)")
    flags.add_argument("--limit", type=int, default=20, help="highest-scoring flags shown per policy (default 20)")
    flags.add_argument("--json", action="store_true", help="print one object per policy with its flags")

    duplicates = command("duplicates", "groups of exact, near (perceptual hash) and semantic (vector) duplicates")
    duplicates.add_argument("--link", choices=["exact", "near", "semantic"], help="only groups linked this way")
    duplicates.add_argument(
        "--limit", type=int, default=20, help="largest groups shown (default 20; 0: only their number)"
    )
    duplicates.add_argument("--json", action="store_true", help="print a JSON list of groups with their members")
    duplicates.add_argument(
        "--update", action="store_true", help="first compare the chunks served since the last comparison"
    )

    serve = command("serve", "HTTP search API and a web page, models and vectors kept loaded")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--token",
        default=os.environ.get("MM_ASSETS_TOKEN"),
        help="required by every API call (env MM_ASSETS_TOKEN); required when binding beyond loopback",
    )

    config = command("config", "the effective settings and where each came from (file, env, option)")
    config.add_argument("--json", action="store_true", help="print a JSON list of {key, value, origin}")

    demo = command("demo", "offline: generate a labelled corpus, train a small CLIP, run everything")
    demo.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs (default 40)")
    demo.add_argument("--per-label", type=int, default=20, help="images per label (80 labels; default 20)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_libraries()
    try:
        if args.command == "demo":
            return cmd_demo(args)
        settings = load_settings(args.config, home=args.home, model=args.model)
        commands = {
            "run": cmd_run,
            "search": cmd_search,
            "status": cmd_status,
            "eval": cmd_eval,
            "flags": cmd_flags,
            "duplicates": cmd_duplicates,
            "serve": cmd_serve,
            "config": cmd_config,
        }
        return commands[args.command](settings, args)
    except (ModelNotFoundError, VectorDBError, ValueError, BadFile) as exc:
        print(f"mm-assets: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be created or read: the path and the system's reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mm-assets: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def cmd_config(settings: Settings, args) -> int:
    rows = describe_settings(settings)
    if args.json:
        print(json.dumps([{"key": k, "value": v, "origin": o} for k, v, o in rows], indent=1, default=str))
        return 0
    width = max(len(k) for k, _, _ in rows)
    for key, value, origin in rows:
        print(f"{key:<{width}}  {json.dumps(value, default=str):<40}  {origin}")
    return 0


def cmd_run(settings: Settings, args) -> int:
    from mm_assets.discovery import discovering

    for key, value, origin in describe_settings(settings):
        if origin.startswith(("env ", "--")):  # said once, so an override is never silent
            print(f"{key} = {value} (from {origin})")
    sources = [Path(d) for d in args.dirs] or list(settings.sources)
    if not sources:
        raise ValueError("give one or more folders (`mm-assets run DIR ...`) or set `sources:` in mm_assets.yaml")
    with LiveProgress() as live, listening(live):
        # The new images decode on another core while Dagster is imported and its instance started.
        with discovering(settings, sources) as discovered:
            from mm_assets.runs import run_pipeline  # imports Dagster: only for the commands that need it

            summary = run_pipeline(
                settings, sources, discovered=discovered, wait_duplicates=not args.no_wait_duplicates
            )
    for line in summary.lines():
        print(line)
    if summary.duplicates_pending:
        pid, log = _duplicates_in_background(settings, args)
        print(f"duplicates: comparing in the background (pid {pid}, log {log}); `mm-assets duplicates` lists them")
    return 0 if summary.ok else 1


def _duplicates_in_background(settings: Settings, args) -> tuple[int, Path]:
    """`mm-assets duplicates --update` in its own session: it outlives this command and the terminal."""
    import subprocess

    log = settings.home / "logs" / "duplicates.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    options = [f"--{name}={value}" for name in ("config", "home", "model") if (value := getattr(args, name, None))]
    command = [sys.executable, "-m", "mm_assets.cli", *options, "duplicates", "--update", "--limit", "0"]
    with open(log, "ab") as out:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return child.pid, log


def _place(chunk: dict) -> str:
    """Where a chunk is in its file: "figure, page 2", "frame, 12.0-17.0 s"."""
    parts = [chunk["role"]] if chunk.get("role") not in (None, "window", "image") else []
    if chunk.get("page"):
        parts.append(f"page {chunk['page']}")
    if chunk.get("t_start") is not None:
        parts.append(f"{chunk['t_start']:.1f}-{chunk['t_end']:.1f} s")
    return ", ".join(parts)


def _print_hits(hits) -> None:
    for rank, h in enumerate(hits, 1):
        snippet = (h.text or "").replace("\n", " ")
        place = _place(h.as_dict())
        score = f"  score {h.score:.3f}" if h.score is not None else ""
        print(
            f"{rank:>3}  {h.distance:.4f}{score}  {h.modality:<5}  {h.path}"
            + (f"  ({place})" if place else "")
            + (f"\n       {snippet[:100]}" if snippet else "")
        )
        if h.describes:
            d = h.describes
            print(f"       describes the {d['modality']} chunk {d['chunk_id']} ({_place(d)})")
        for c in h.context:
            around = (c["text"] or f"[{c['modality']}: {_place(c) or c['role']}]").replace("\n", " ")
            print(f"       {'before' if c['position'] < h.position else 'after '}: {around[:100]}")
    if not hits:
        print("no results")


def cmd_search(settings: Settings, args) -> int:
    from mm_assets.encoders.identity import encoder_key
    from mm_assets.search.query import search

    if sum(q is not None for q in (args.text, args.image, args.audio, args.like)) != 1:
        raise ValueError("give a text query, --image PATH, --audio PATH or --like PATH_OR_CHUNK (exactly one)")
    for option, path in (("--image", args.image), ("--audio", args.audio)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{option} {path}: no such file")
    try:
        hits = search(
            settings.db_path,
            text=args.text,
            image=args.image,
            audio=args.audio,
            like=args.like,
            k=args.k,
            modality=args.modality,
            encoder=args.encoder,
            default_key=None if args.encoder else encoder_key(settings.default_encoder),
            exact=args.exact,
            compact=args.compact,
            context=args.context,
            group_by_file=args.group_by_file,
            calibrated=not args.uncalibrated,
            hybrid=args.hybrid,
            dedup=args.dedup,
            hnsw_ef_search=settings.hnsw_ef_search,
            calibrations=settings.layout.calibrations,
            duplicate_pairs=settings.layout.duplicate_pairs,
        )
    except KeyError:
        raise ValueError(f"--like {args.like}: no served file or chunk with a vector in that encoder's table") from None
    except BadFile as exc:  # the query file itself: name it
        raise ValueError(f"{'--image ' + args.image if args.image else '--audio ' + args.audio}: {exc}") from None
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
        return 0
    _print_hits(hits)
    return 0


def cmd_status(settings: Settings, args) -> int:
    from mm_assets.store.catalog import list_encoder_tables, quarantined_files, table_counts
    from mm_assets.store.segments import open_generation

    layout = settings.layout
    con, generation = open_generation(layout.db_path)
    try:
        counts = table_counts(con)
        encoders = sorted((t.summary() for t in list_encoder_tables(con)), key=lambda e: e["table"])
        quarantine = quarantined_files(con)
    finally:
        con.close()
    batches = len(layout.batches())
    serving = {"generation": generation.number, "segments": len(generation.segments), "dead_rows": generation.dead_rows}
    report = {"home": str(settings.home), "batches": batches, **counts, **serving, "encoders": encoders}
    report["quarantined"] = quarantine
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(
        f"home {settings.home}: {batches} batches, {counts['files']} files, {counts['chunks']} chunks, "
        f"{counts['quarantine']} quarantined; generation {generation.number} in {len(generation.segments)} "
        f"segment(s), {generation.dead_rows} dead rows"
    )
    for e in encoders:
        flag = "default" if e["default"] else ("current" if e["current"] else "old")
        print(f"  {e['table']:<32} {e['vectors']:>8} vectors  {flag:<7}  {e['model']} @ {e['revision']}")
    for q in quarantine:
        print(f"  quarantined {q['path']}: {q['reason']}")
    return 0


def _run_failed(asset: str, run) -> int:
    errors = "".join(f"\n  {error}" for error in run.errors)
    print(f"mm-assets: error: the {asset} run failed (its logs: the Dagster UI){errors}", file=sys.stderr)
    return 1


def cmd_eval(settings: Settings, args) -> int:
    from mm_assets.evaluation.history import latest_results
    from mm_assets.evaluation.retrieval import comparison_markdown
    from mm_assets.runs import run_evaluation
    from mm_assets.store.segments import open_generation

    open_generation(settings.db_path)[0].close()  # nothing indexed yet: say what to run, before any run
    run = run_evaluation(settings)
    if not run.ok:
        return _run_failed("retrieval_eval", run)
    results = latest_results(settings.layout.evaluations)
    if args.json:
        print(json.dumps(results, indent=1))
    elif results:
        print(comparison_markdown(results))
    else:
        print("no captioned images in the test split: add sidecar captions (photo.jpg + photo.txt) or captions.csv")
    return 0


def cmd_duplicates(settings: Settings, args) -> int:
    from mm_assets.duplicates import list_duplicates
    from mm_assets.store.segments import open_generation

    if args.update:
        from mm_assets.runs import run_duplicates

        open_generation(settings.db_path)[0].close()  # nothing served yet: say what to run, before any run
        with LiveProgress() as live, listening(live):
            run = run_duplicates(settings)
        if not run.ok:
            return _run_failed("duplicates", run)
    con, _ = open_generation(settings.db_path)
    try:
        found = list_duplicates(con, settings.layout.duplicate_pairs, args.link)
    finally:
        con.close()
    groups = found[: args.limit]
    if args.limit == 0:
        print(f"{len(found):,} duplicate groups")
        return 0
    if args.json:
        print(json.dumps(groups, indent=1))
        return 0
    if not groups:
        print("no duplicates found" + ("" if settings.layout.duplicate_pairs.exists() else " (not compared yet: run)"))
    for g in groups:
        print(f"{len(g['members'])} items, {' + '.join(g['links'])}:")
        for m in g["members"]:
            where = f" at {m['t_start']:.1f} s" if m.get("t_start") is not None else ""
            also = f"  (also at {', '.join(m['also_at'])})" if m.get("also_at") else ""
            print(f"  {m['path']}{where}{also}")
    return 0


def cmd_flags(settings: Settings, args) -> int:
    from mm_assets.moderation import read_flags
    from mm_assets.store.segments import open_generation

    if args.policy and args.policy not in {p.name for p in settings.policies}:
        raise ValueError(f"no policy named {args.policy!r}; configured: {[p.name for p in settings.policies]}")
    con, _ = open_generation(settings.db_path)
    try:
        policies = read_flags(settings.layout.flags, con, args.policy, args.limit)
    finally:
        con.close()
    if args.json:
        print(json.dumps(policies, indent=1, default=str))
        return 0
    if not policies:
        print("no policy scored yet: configure `policies:` and run `mm-assets run`")
    for p in policies:
        figures = [f"{p['n_flagged']:,} of {p['n_scored']:,} chunks flagged"]
        if p["threshold"] is not None:
            figures.append(f"threshold {p['threshold']:.4f}")
        if p["precision"] is not None:
            figures.append(f"precision {p['precision']:.2f}, recall {p['recall']:.2f} on {p['n_labelled']} labelled")
        print(f"{p['policy']}: " + "; ".join(figures) + (f"\n  {p['note']}" if p["note"] else ""))
        for f in p["flags"]:
            snippet = (f["text"] or "").replace("\n", " ")[:80]
            print(f"  {f['score']:.4f}  {f['modality']:<5}  {f['path']}" + (f"  {snippet}" if snippet else ""))
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only localhost is known to stay on this machine
        return host == "localhost"


def cmd_serve(settings: Settings, args) -> int:
    import uvicorn

    from mm_assets.service.app import create_app, warm_up

    if not _is_loopback(args.host) and not args.token:
        raise ValueError(f"binding to {args.host} serves the index beyond this machine: set --token or MM_ASSETS_TOKEN")
    app = create_app(settings, token=args.token)
    warm_up(app)
    print(f"serving {settings.db_path} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_demo(args) -> int:
    import time

    from mm_assets.demo import generate_corpus, write_demo_config
    from mm_assets.search.query import search

    start = time.monotonic()
    home = Path(args.home or ".mm_assets/demo").resolve()
    corpus = home / "corpus"
    if not (corpus / "captions.csv").exists():
        n = generate_corpus(corpus, per_label=args.per_label)
        print(f"generated {n} captioned images and 3 notes in {corpus}")
    config = write_demo_config(home, epochs=args.epochs)
    settings = load_settings(config)
    # Later commands run here read ./mm_assets.yaml by default: the demo's settings go there, unless the
    # user has settings of their own (then the commands below name the demo's file).
    here = Path("mm_assets.yaml")
    if args.home is None and not here.exists() and not os.environ.get("MM_ASSETS_CONFIG"):
        here.write_text(config.read_text())
        print(f"wrote {here.resolve()} (the demo's settings: later `mm-assets` commands here use them)")
    flag = "" if here.exists() and here.read_text() == config.read_text() else f"--config {config} "
    print("ingesting, embedding with the untrained model, fine-tuning, embedding again ...")
    cmd_run(settings, argparse.Namespace(dirs=[], no_wait_duplicates=False))
    print("\nretrieval on the held-out split (same labels count as relevant):")
    cmd_eval(settings, argparse.Namespace(json=False))
    for query in ("a red circle in the top left", "a blue square in the bottom right"):
        print(f"\nsearch {query!r} (demo_tuned, images):")
        _print_hits(search(settings.db_path, text=query, k=3, modality="image", encoder="demo_tuned"))
    ui_config = f"MM_ASSETS_CONFIG={config} " if flag else ""
    print(
        f"\ndone in {time.monotonic() - start:.0f}s. Next:\n"
        f'  mm-assets {flag}search "a green cross"\n'
        f"  mm-assets {flag}status\n"
        f"  {ui_config}DAGSTER_HOME={home / 'dagster'} dagster dev -w workspace.yaml"
    )
    return 0


def entry() -> None:
    """The `mm-assets` command: main, then an exit that skips tearing the interpreter down. Freeing
    Dagster's thousands of modules and objects one by one took 0.6-0.8 s after every command had
    finished; by then every file is closed and every write committed or renamed into place, and the
    operating system takes the memory back at once."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away (`| head`): nothing more to say
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
