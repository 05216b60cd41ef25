"""The ``mushroom`` command: thin wrappers over the library. Errors are one sentence on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from .settings import get_settings


def _fmt_metrics(m: dict) -> str:
    return (f"accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
            f"f1 {m['f1']:.4f}  false_edible {m['false_edible']}")


def _say(text: str = "") -> None:
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- commands
def cmd_data(settings, args) -> int:
    from .data import acquire

    res = acquire(settings, args.source, timeout=args.timeout, progress=sys.stderr.isatty())
    total = max(res.rows, 1)
    bal = ", ".join(f"{'edible' if k == 'e' else 'poisonous'} {v} ({v / total:.1%})" for k, v in res.balance.items())
    print(f"wrote {res.path} from {res.source}: {res.rows} rows; {bal}")
    return 0


def _config_from(args):
    from .model import ModelConfig
    from .registry import Registry

    reg = Registry(get_settings(args.home))
    champ = reg.champion()
    base = ModelConfig.from_dict(reg.metadata(champ)["params"]) if champ else ModelConfig()
    for name in ("n_components", "seed", "encoder", "classifier", "n_neighbors", "n_estimators"):
        value = getattr(args, name, None)
        if value is not None:
            if name != "seed" and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
            setattr(base, name, value)
    return base


def cmd_train(settings, args) -> int:
    if args.resplit:
        from .data import make_split

        if args.seed is not None:  # the new split follows --seed too
            settings = settings.with_(seed=args.seed)

        split = make_split(settings, force=True)
        _say(f"new split of {settings.dataset_path.name}: {len(split.train)} training rows, "
             f"{len(split.holdout)} holdout rows (seed {split.seed})")
    if args.notebook:
        from .runner import run_train_notebook

        path = run_train_notebook(settings, n_components=args.n_components or 3, seed=args.seed or settings.seed,
                                  promote=not args.no_promote)
        print(f"executed notebook: {path}")
        return 0
    from .training import train

    res = train(settings, _config_from(args), trigger="manual", promote=not args.no_promote, force=args.force)
    state = "champion" if res.promoted else ("rejected: " + res.reason if res.reason else "registered, not promoted")
    print(f"{res.version} ({state}); trained on {res.training_rows} rows ({res.feedback_rows} feedback) "
          f"in {res.seconds:.1f}s")
    print(f"holdout: {_fmt_metrics(res.metrics)}  threshold {res.threshold:.4f}")
    return 0 if res.promoted or args.no_promote else 1


def cmd_predict(settings, args) -> int:
    if args.max_mb <= 0:
        raise ValueError(f"--max-mb must be above 0, not {args.max_mb}")
    from .predict_file import predict_file

    predict_file(settings, args.input, args.output, size_cap=int(args.max_mb * 1024 * 1024),
                 engine=args.engine, progress=sys.stderr.isatty())
    return 0


def cmd_feedback(settings, args) -> int:
    from .schema import read_csv_file
    from .service import ModelService

    frame = read_csv_file(args.input, size_cap=int(args.max_mb * 1024 * 1024))
    svc = ModelService(settings=settings)
    receipt = svc.submit_feedback(frame, source=args.source)
    print(json.dumps(receipt.to_dict(), indent=2, default=str))
    return 0


def cmd_status(settings, args) -> int:
    from .service import ModelService

    st = ModelService(settings=settings).status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0 if st["model_version"] else 1
    if not st["model_version"]:
        print(f"no model yet in {st['home']}: run `mushroom data` then `mushroom train`")
        return 1
    print(f"champion      {st['model_version']}  (created {st['created_utc']})")
    print(f"holdout       {_fmt_metrics(st['metrics'])}")
    print(f"threshold     {st['threshold']:.4f} on p_poisonous (>= threshold is called poisonous)")
    print(f"feedback      {st['feedback_rows']} rows; {st['rows_until_retrain']} of {st['k']} until the next retrain")
    if st["last_retrain"]:
        lr = st["last_retrain"]
        print(f"last retrain  {lr['version']} {lr['status']}" + (f": {lr['reason']}" if lr.get("reason") else ""))
    print(f"contradicting {st['contradicting_feedback_rows']} feedback rows disagree with the dataset's label")
    if st["load_error"]:
        print(f"warning       the pointer names a model that was refused: {st['load_error']}")
    return 0


def cmd_models(settings, args) -> int:
    from .registry import Registry

    reg = Registry(settings)
    if args.action == "list":
        champ = reg.champion()
        versions = reg.versions()
        if not versions:
            print("no models registered yet")
            return 0
        print(f"{'version':8} {'status':9} {'trigger':8} {'created (UTC)':25} {'acc':>7} {'f1':>7} {'FE':>3}  reason")
        for v in versions:
            m = reg.metadata(v)
            hm = m.get("holdout_metrics", {})
            mark = "*" if v == champ else " "
            print(f"{v + mark:8} {m.get('status', ''):9} {m.get('trigger', ''):8} {m.get('created_utc', ''):25} "
                  f"{hm.get('accuracy', 0):7.4f} {hm.get('f1', 0):7.4f} {hm.get('false_edible', 0):3d}  "
                  f"{m.get('reason') or ''}")
        return 0
    if args.action == "promote":
        if not args.version:
            raise ValueError("`models promote` needs a version, e.g. v0002")
        print(f"champion is now {reg.promote(args.version, reason='manual promote')}")
        return 0
    print(f"champion is now {reg.rollback()}")
    return 0


def cmd_report(settings, args) -> int:
    from .runner import run_report_notebook

    path = run_report_notebook(settings, progress=not args.quiet)
    if not args.quiet:
        print(f"executed notebook: {path}")
    return 0


def cmd_ui(settings, args) -> int:
    from .monitoring import serve_ui

    return serve_ui(settings, port=args.port)


def cmd_dashboard(settings, args) -> int:
    from .dashboard import serve

    return serve(settings, port=args.port, host=args.host, token=args.token)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mushroom", description="Mushroom workbench: data, training, "
                                "prediction, feedback and monitoring for the UCI mushroom classifier.")
    p.add_argument("--home", help="project folder (default: $MUSHROOM_HOME or the current folder)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="put the validated dataset at HOME/data/mushrooms.csv")
    d.add_argument("--source", help="a CSV/zip path or an http(s) URL (default: $MUSHROOM_DATA, an existing "
                   "copy, then the UCI archive)")
    d.add_argument("--timeout", type=float, default=30.0, help="download timeout in seconds")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train, evaluate on the holdout, register and promote a model")
    t.add_argument("--n-components", type=int, default=None, help="PCA components (default 3)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--encoder", choices=["target", "onehot", "ordinal"], default=None)
    t.add_argument("--classifier", choices=["knn", "extra_trees", "random_forest"], default=None)
    t.add_argument("--n-neighbors", type=int, default=None)
    t.add_argument("--n-estimators", type=int, default=None)
    t.add_argument("--no-promote", action="store_true", help="register only")
    t.add_argument("--force", action="store_true", help="promote even if the safety gate refuses")
    t.add_argument("--notebook", action="store_true", help="run notebooks/train.ipynb through papermill")
    t.add_argument("--resplit", action="store_true", help="make a new train/holdout split (needed after "
                   "`mushroom data` brought a different dataset)")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="score a CSV with the champion")
    pr.add_argument("input", help="CSV in the dataset layout (with or without class) or the UCI layout")
    pr.add_argument("-o", "--output", help="output CSV (default: stdout)")
    pr.add_argument("--max-mb", type=float, default=200.0, help="refuse larger inputs (default 200)")
    pr.add_argument("--engine", choices=["local", "dask"], default="local")
    pr.set_defaults(func=cmd_predict)

    f = sub.add_parser("feedback", help="submit labelled rows (class column = true label)")
    f.add_argument("input")
    f.add_argument("--source", default="cli")
    f.add_argument("--max-mb", type=float, default=200.0)
    f.set_defaults(func=cmd_feedback)

    s = sub.add_parser("status", help="champion, metrics, feedback and retrain state")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    m = sub.add_parser("models", help="list, promote or roll back model versions")
    m.add_argument("action", choices=["list", "promote", "rollback"])
    m.add_argument("version", nargs="?")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser("report", help="run notebooks/report.ipynb: Evidently drift + quality report")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)

    u = sub.add_parser("ui", help="start `evidently ui` on reports/workspace (127.0.0.1)")
    u.add_argument("--port", type=int, default=8082)
    u.set_defaults(func=cmd_ui)

    db = sub.add_parser("dashboard", help="serve the Voila dashboard on 127.0.0.1")
    db.add_argument("--port", type=int, default=8866)
    db.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; anything but 127.0.0.1 needs --token (or MUSHROOM_DASHBOARD_TOKEN)")
    db.add_argument("--token", default=None, help="every request must carry it (?token=...)")
    db.set_defaults(func=cmd_dashboard)
    return p


def _user_errors() -> tuple:
    """Errors shown in one line with exit 2, imported only when one occurs: service.py pulls in
    scikit-learn (about 1 s) that `mushroom report` and `mushroom ui` would pay before they start."""
    from .data import DataError
    from .registry import RegistryError
    from .schema import SchemaError
    from .service import NoChampionError

    return (SchemaError, DataError, RegistryError, NoChampionError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mushroom`` console script."""
    args = build_parser().parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    warnings.showwarning = lambda msg, *a, **k: print(f"mushroom: warning: {msg}", file=sys.stderr)
    try:
        settings = get_settings(args.home)
        return args.func(settings, args)
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            text = " ".join(str(exc).split()) or exc.__class__.__name__
            print(f"mushroom: error: {text}", file=sys.stderr)
            return 2
        # a bug: still one line, the traceback only on request
        if os.environ.get("MUSHROOM_DEBUG"):
            raise
        text = " ".join(str(exc).split())
        print(f"mushroom: error: unexpected {exc.__class__.__name__}: {text} "
              "(set MUSHROOM_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mushroom: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
