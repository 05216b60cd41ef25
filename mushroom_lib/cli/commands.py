"""The ``mushroom`` command: parse the arguments, call the library, print the outcome; nothing else.

Errors a user can fix are one sentence on stderr with exit 2. Each command imports what it needs when it runs
(pandas, scikit-learn, filelock, papermill, ...), so `mushroom --help` and `mushroom predict` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from ..core.errors import USER_ERRORS, one_line
from ..core.settings import get_settings
from ..core.vocab import CODE_TO_WORD


def _fmt_metrics(m: dict) -> str:
    return (f"accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
            f"f1 {m['f1']:.4f}  false_edible {m['false_edible']}")


def _say(text: str = "") -> None:
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- commands
def cmd_data(settings, args) -> int:
    from ..data.dataset import acquire  # lazy: pandas

    res = acquire(settings, args.source, timeout=args.timeout, progress=sys.stderr.isatty(), force=args.force)
    total = max(res.rows, 1)
    bal = ", ".join(f"{CODE_TO_WORD.get(k, k)} {v} ({v / total:.1%})" for k, v in res.balance.items())
    print(f"wrote {res.path} from {res.source}: {res.rows} rows; {bal}")
    return 0


def _config_from(args):
    from ..model.pipeline import ModelConfig  # lazy: numpy and pandas
    from ..registry.versions import (
        Registry,  # lazy: filelock, ~25 ms of every command that never reads the registry
    )

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
        from ..data.dataset import make_split  # lazy: pandas

        if args.seed is not None:  # the new split follows --seed too
            settings = settings.with_(seed=args.seed)

        split = make_split(settings, force=True)
        _say(f"new split of {settings.dataset_path.name}: {len(split.train)} training rows, "
             f"{len(split.holdout)} holdout rows (seed {split.seed})")
    if args.notebook:
        from ..notebooks.runner import (
            run_train_notebook,  # lazy: filelock and the notebook machinery
        )

        path = run_train_notebook(settings, n_components=args.n_components or 3, seed=args.seed or settings.seed,
                                  promote=not args.no_promote)
        print(f"executed notebook: {path}")
        return 0
    from ..training.train import train  # lazy: pandas and the training stack

    res = train(settings, _config_from(args), trigger="manual", promote=not args.no_promote, force=args.force,
                accept_lower=args.accept_lower)
    state = "champion" if res.promoted else ("rejected: " + res.reason if res.reason else "registered, not promoted")
    print(f"{res.version} ({state}); trained on {res.training_rows} rows ({res.feedback_rows} feedback) "
          f"in {res.seconds:.1f}s")
    print(f"holdout: {_fmt_metrics(res.metrics)}  threshold {res.threshold:.4f}")
    return 0 if res.promoted or args.no_promote else 1


def _size_cap(args) -> int:
    """--max-mb in bytes (predict and feedback share it)."""
    if not args.max_mb > 0:
        raise ValueError(f"--max-mb must be above 0, not {args.max_mb}")
    return int(min(args.max_mb, 1 << 30) * 1024 * 1024)


def cmd_predict(settings, args) -> int:
    from ..batch.predict import (
        predict_file,  # lazy: only what scoring a file needs, loaded when it runs
    )

    predict_file(settings, args.input, args.output, size_cap=_size_cap(args),
                 engine=args.engine, progress=sys.stderr.isatty())
    return 0


def cmd_feedback(settings, args) -> int:
    from ..service import ModelService  # lazy: pandas and the model stack

    if args.action == "submit":
        from ..data.schema import read_csv_file  # lazy: pandas

        frame = read_csv_file(args.input, size_cap=_size_cap(args))
        source = args.source or f"cli:{os.path.basename(args.input)}"
        receipt = ModelService(settings=settings).submit_feedback(frame, source=source)
        print(json.dumps(receipt.to_dict(), indent=2, default=str))
        return 0
    from ..feedback.loop import FeedbackLoop  # lazy: pandas
    from ..feedback.review import FeedbackReview  # lazy: pandas

    review = FeedbackReview(FeedbackLoop(settings, _no_scorer, lambda: None))
    if args.action == "list":
        rows = review.list(source=args.source, since=args.since, contradicting=args.contradicting)
        if args.json:
            print(json.dumps(rows.to_dict("records"), indent=2, default=str))
        else:
            _print_feedback(rows)
        return 0
    if args.action == "exclude":
        event = review.exclude(args.ids, source=args.source, since=args.since, reason=args.reason or "")
        print(f"excluded {len(event['ids'])} feedback row(s) ({_id_span(event['ids'])}): {event['reason']}")
    else:
        if args.source or args.since:
            raise ValueError("`feedback include` takes feedback ids only")
        event = review.include(args.ids, reason=args.reason or "")
        print(f"included {len(event['ids'])} feedback row(s) again ({_id_span(event['ids'])})")
    if args.retrain:
        receipt = ModelService(settings=settings).feedback.retrain(wait=True)
        print(json.dumps(receipt.to_dict(), indent=2, default=str))
    else:
        print("the next retrain leaves them out (`--retrain` runs it now)" if args.action == "exclude" else
              "the next retrain uses them again (`--retrain` runs it now)")
    return 0


def _no_scorer():
    raise RuntimeError("reviewing feedback scores nothing")


def _id_span(ids: list[int]) -> str:
    return f"ids {ids[0]}..{ids[-1]}" if len(ids) > 3 else "ids " + ", ".join(map(str, ids))


def _print_feedback(rows) -> None:
    if not len(rows):
        print("no feedback rows match")
        return
    print(f"{'id':>7}  {'source':20} {'timestamp (UTC)':25} {'class':9} {'predicted':9} contra  excluded")
    for r in rows.itertuples(index=False):
        gone = f"yes: {r.excluded_reason} ({r.excluded_by}, {r.excluded_at})" if r.excluded else ""
        print(f"{r.feedback_id:>7}  {str(r.source)[:20]:20} {str(r.timestamp)[:25]:25} {r.target:9} "
              f"{r.prediction:9} {'yes' if r.contradicts else '':6}  {gone}")


def cmd_status(settings, args) -> int:
    from ..model.pipeline import (
        P_MEANING,  # lazy: numpy and pandas (service loads them anyway)
    )
    from ..service import ModelService  # lazy: pandas and the model stack

    st = ModelService(settings=settings).status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0 if st["model_version"] else 1
    if not st["model_version"]:
        if st["load_error"]:
            print(f"refused       {st['load_error']}")
            print("no model serves: promote another version (`mushroom models promote vNNNN`) or run `mushroom train`")
        else:
            print(f"no model yet in {st['home']}: run `mushroom data` then `mushroom train`")
        return 1
    meta = _champion_record(settings, st["model_version"])
    print(f"champion      {st['model_version']}  (created {st['created_utc']})")
    print(f"holdout       {_fmt_metrics(st['metrics'])}")
    print(f"threshold     {st['threshold']:.4f} on p_poisonous (>= threshold is called poisonous); {P_MEANING}"
          + (f"; holdout Brier {meta['brier']:.4f}" if meta.get("brier") is not None else ""))
    if meta.get("cutoff"):
        print(f"known set     a mushroom differing from every training mushroom in {meta['cutoff']} or more features, "
              "with a code never seen in training, or reported with both labels is called poisonous"
              + (f" ({meta['conflicts']} conflicting feature rows)" if meta.get("conflicts") else ""))
    print(f"feedback      {st['feedback_rows']} rows ({st['feedback_excluded']} excluded); "
          f"{st['rows_until_retrain']} of {st['k']} until the next retrain")
    if st["feedback_sources"]:
        print("sources       " + ", ".join(f"{k} {v}" for k, v in sorted(st["feedback_sources"].items())))
    lr = st["last_retrain"]
    if lr:
        what = lr.get("reason") or lr.get("error")
        print(f"last retrain  {lr['status']}" + (f" {lr['version']}" if lr.get("version") else "")
              + f" (started {lr.get('started')})" + (f": {what}" if what else ""))
    if st["retrain_queued"]:
        print(f"queued        {st['retrain_queued']} retrain request(s) for the background worker")
    rep = st["last_report"]
    if rep:
        print(f"last report   {rep.get('status')} for {rep.get('model_version')} (finished {rep.get('finished')})"
              + (f": {rep['reason']}" if rep.get("reason") else ""))
    print(f"contradicting {st['contradicting_feedback_rows']} feedback rows disagree with the dataset's label")
    if st["load_error"]:
        print(f"refused       {st['load_error']} (still serving {st['model_version']})")
    return 0


def _champion_record(settings, version: str) -> dict:
    """The few record facts `mushroom status` shows (cutoff, conflicts, Brier)."""
    from ..registry.versions import Registry  # lazy: filelock

    meta = Registry(settings).metadata(version)
    return {"cutoff": meta.get("cutoff"), "conflicts": meta.get("conflicting_rows_total"),
            "brier": (meta.get("holdout_metrics") or {}).get("brier")}


def cmd_identify(settings, args) -> int:
    from ..data.identify import format_answer  # lazy: numpy and pandas
    from ..service import ModelService  # lazy: pandas and the model stack

    given = {}
    for item in args.features:
        name, sep, code = item.partition("=")
        if not sep:
            shown = item[:60] + ("…" if len(item) > 60 else "")
            raise ValueError(f"{shown!r} is not feature=code (e.g. odor=n spore-print-color=w)")
        if name.strip() in given:
            raise ValueError(f"{name.strip()[:60]} is given twice; give each feature once")
        given[name.strip()] = code
    ans = ModelService(settings=settings).identify(given)
    print(json.dumps(ans, indent=2, default=str) if args.json else format_answer(ans))
    return 0


def cmd_models(settings, args) -> int:
    from ..registry.versions import Registry  # lazy: filelock

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
    if args.action == "prune":
        removed = reg.prune(keep=args.keep)
        print(f"removed {len(removed)} version(s)" + (f": {', '.join(removed)}" if removed else "")
              + f"; kept the newest {args.keep}, the champion and its parent")
        return 0
    if args.action == "promote":
        if not args.version:
            raise ValueError("`models promote` needs a version, e.g. v0002")
        print(f"champion is now {reg.promote(args.version, reason='manual promote')}")
        return 0
    print(f"champion is now {reg.rollback()}")
    return 0


def cmd_report(settings, args) -> int:
    from ..notebooks.runner import (
        run_report_notebook,  # lazy: filelock and the notebook machinery
    )

    path = run_report_notebook(settings, progress=not args.quiet)
    if not args.quiet:
        print(f"executed notebook: {path}")
    return 0


def cmd_ui(settings, args) -> int:
    from ..monitoring import serve_ui  # lazy: pandas (the monitoring package)

    return serve_ui(settings, port=args.port, host=args.host, token=args.token)


def cmd_dashboard(settings, args) -> int:
    from ..dashboard import serve  # lazy: Voila and Jupyter server

    return serve(settings, port=args.port, host=args.host, token=args.token)


def cmd_api(settings, args) -> int:
    from ..api import serve  # lazy: FastAPI and uvicorn

    return serve(settings, host=args.host, port=args.port, workers=args.workers,
                 key_for_reads=args.key_for_reads, max_mb=args.max_mb)


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line, like every other error."""

    def error(self, message: str):
        print(f"mushroom: error: {one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mushroom", description="Mushroom workbench: data, training, "
                                "prediction, feedback and monitoring for the UCI mushroom classifier.")
    p.add_argument("--home", help="project folder (default: $MUSHROOM_HOME or the current folder)")
    sub = p.add_subparsers(dest="command", required=True)
    _add_model_commands(sub)
    _add_scoring_commands(sub)
    _add_inspection_commands(sub)
    _add_server_commands(sub)
    return p


#: free-text caps (the API refuses longer values too)
REASON_MAX, SOURCE_MAX = 500, 40


def _capped(limit: int):
    """An argparse type: text of at most ``limit`` characters (a longer value is a usage error, exit 2)."""
    def text(value: str) -> str:
        if len(value) > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} characters, not {len(value)}")
        return value
    return text


def _add_model_commands(sub) -> None:
    """data, train."""
    d = sub.add_parser("data", help="put the validated dataset at HOME/data/mushrooms.csv")
    d.add_argument("--source", help="a CSV/zip path or an http(s) URL (default: $MUSHROOM_DATA, an existing "
                   "copy, then the UCI archive)")
    d.add_argument("--timeout", type=float, default=30.0, help="download timeout in seconds")
    d.add_argument("--force", action="store_true", help="accept a dataset outside 1,000-1,000,000 rows or "
                   "with a class under 10%% (the 64 MiB size cap stays)")
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
    t.add_argument("--accept-lower", action="store_true", help="a reviewer accepts a lower holdout accuracy (from "
                   "confirmed feedback rows that contradict the dataset); false_edible may still never rise")
    t.add_argument("--notebook", action="store_true", help="run notebooks/train.ipynb through papermill")
    t.add_argument("--resplit", action="store_true", help="make a new train/holdout split (needed after "
                   "`mushroom data` brought a different dataset)")
    t.set_defaults(func=cmd_train)


def _add_scoring_commands(sub) -> None:
    """predict, feedback (submit, list, exclude, include)."""
    pr = sub.add_parser("predict", help="score a CSV with the champion")
    pr.add_argument("input", help="CSV in the dataset layout (with or without class) or the UCI layout")
    pr.add_argument("-o", "--output", help="output CSV (default: stdout)")
    pr.add_argument("--max-mb", type=float, default=200.0, help="refuse larger inputs (default 200)")
    pr.add_argument("--engine", choices=["local", "dask"], default="local")
    pr.set_defaults(func=cmd_predict)

    f = sub.add_parser("feedback", help="submit, list, exclude or include labelled rows (`mushroom feedback "
                       "IN.csv` is short for `mushroom feedback submit IN.csv`)")
    fsub = f.add_subparsers(dest="action", required=True)
    fs = fsub.add_parser("submit", help="submit labelled rows (class column = true label); waits for a retrain due")
    fs.add_argument("input")
    fs.add_argument("--source", default=None, type=_capped(SOURCE_MAX), help="who sent them (default cli:FILE-NAME)")
    fs.add_argument("--max-mb", type=float, default=200.0)
    fl = fsub.add_parser("list", help="list feedback rows with their ids, sources and exclusions")
    fe = fsub.add_parser("exclude", help="leave rows out of training, K and reports (logged with a reason)")
    fi = fsub.add_parser("include", help="take exclusions back")
    for q in (fl, fe, fi):
        q.add_argument("--source", type=_capped(SOURCE_MAX), help="only rows from this source")
        q.add_argument("--since", type=_capped(64), help="only rows sent at or after this time (ISO, UTC)")
    fl.add_argument("--contradicting", action="store_true", help="only rows contradicting the dataset's label")
    fl.add_argument("--json", action="store_true")
    for q in (fe, fi):
        q.add_argument("ids", nargs="*", help="feedback ids (see `feedback list`)")
        q.add_argument("--reason", type=_capped(REASON_MAX), help="why (required for exclude)")
        q.add_argument("--retrain", action="store_true", help="retrain now and wait for the outcome")
    f.set_defaults(func=cmd_feedback)


def _add_inspection_commands(sub) -> None:
    """status, identify, models, report."""
    s = sub.add_parser("status", help="champion, metrics, feedback and retrain state")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    i = sub.add_parser("identify", help="what the known mushrooms with these features are (worst case; "
                       "not advice to eat any mushroom)")
    i.add_argument("features", nargs="*", metavar="feature=code", help="e.g. odor=n spore-print-color=w")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_identify)

    m = sub.add_parser("models", help="list, promote or roll back model versions")
    m.add_argument("action", choices=["list", "promote", "rollback", "prune"])
    m.add_argument("version", nargs="?")
    m.add_argument("--keep", type=int, default=10, help="prune: versions to keep (default 10)")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser("report", help="run notebooks/report.ipynb: Evidently drift + quality report")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)


def _add_server_commands(sub) -> None:
    """ui, dashboard, api: servers on 127.0.0.1 unless told otherwise (with a token or key)."""
    u = sub.add_parser("ui", help="start `evidently ui` on reports/workspace (127.0.0.1; read-only)")
    u.add_argument("--port", type=int, default=8082)
    u.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback needs --token (or MUSHROOM_UI_TOKEN)")
    u.add_argument("--token", default=None, help="every request must carry it (?token=... once, then a cookie; "
                   "or 'Authorization: Bearer ...'): served through a token-checking proxy")
    u.set_defaults(func=cmd_ui)

    db = sub.add_parser("dashboard", help="serve the Voila dashboard on 127.0.0.1")
    db.add_argument("--port", type=int, default=8866)
    db.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; anything but 127.0.0.1 needs --token (or MUSHROOM_DASHBOARD_TOKEN)")
    db.add_argument("--token", default=None, help="every request must carry it (?token=...)")
    db.set_defaults(func=cmd_dashboard)

    a = sub.add_parser("api", help="serve the REST API (FastAPI + uvicorn) on 127.0.0.1")
    a.add_argument("--host", default="127.0.0.1", help="any other address needs MUSHROOM_API_KEY set")
    a.add_argument("--port", type=int, default=8080)
    a.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    a.add_argument("--key-for-reads", action="store_true",
                   help="reads (predict, status, models) need X-API-Key too, not only writes")
    a.add_argument("--max-mb", type=float, default=None, help="request body cap in MB (default 20)")
    a.set_defaults(func=cmd_api)


def _show_warning(message, *args, **kwargs) -> None:
    """Every warning as one line of at most 300 characters (errors.one_line)."""
    print(f"mushroom: warning: {one_line(message)}", file=sys.stderr)


FEEDBACK_ACTIONS = ("submit", "list", "exclude", "include", "-h", "--help")


def _feedback_shortcut(argv: list[str]) -> list[str]:
    """`mushroom [--home H] feedback IN.csv ...` is `mushroom ... feedback submit IN.csv ...`."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1 if "=" in argv[i] or argv[i] in ("-h", "--help") else 2  # --home H
    if i + 1 < len(argv) and argv[i] == "feedback" and argv[i + 1] not in FEEDBACK_ACTIONS:
        return [*argv[:i + 1], "submit", *argv[i + 1:]]
    return argv


def _debug() -> bool:
    """MUSHROOM_DEBUG: a bug's traceback instead of its one line (False when the settings themselves fail)."""
    try:
        return get_settings().debug
    except ValueError:
        return False


def _upgrade_old_home(settings) -> None:
    """A home made by an earlier release is upgraded once, before any command reads it (a stat per version)."""
    from ..registry.versions import Registry  # lazy: filelock

    if Registry(settings).without_record():
        from ..training.upgrade import (
            upgrade_home,  # lazy: the training stack, only for an old home
        )

        upgrade_home(settings)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mushroom`` console script."""
    args = build_parser().parse_args(_feedback_shortcut(sys.argv[1:] if argv is None else list(argv)))
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    warnings.showwarning = _show_warning
    try:
        settings = get_settings(args.home)
        _upgrade_old_home(settings)
        return args.func(settings, args)
    except USER_ERRORS as exc:  # input or state the user can fix: one sentence, exit 2
        print(f"mushroom: error: {one_line(str(exc) or exc.__class__.__name__)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("mushroom: error: out of memory; the input is too large for this machine", file=sys.stderr)
        return 2
    except Exception as exc:
        # a bug: still one line, the traceback only on request
        if _debug():
            raise
        text = one_line(f"unexpected {exc.__class__.__name__}: {exc}", 240)
        print(f"mushroom: error: {text} (set MUSHROOM_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mushroom: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
