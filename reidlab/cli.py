"""The ``reidlab`` command line: data synthesis and verification, evaluation, benchmarks, pre-training,
reports.

Each sub-command is a thin wrapper: the work happens in the package, so notebooks and the
CLI share one implementation. Heavy imports are deferred so ``reidlab --help`` is instant.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

from reidlab.data.formats import BENCHMARKS
from reidlab.data.records import PROTOCOL_NAMES
from reidlab.errors import ConfigError, debug_enabled, explain

#: ``reidlab report --scope`` choices: reports.runner.SCOPES, spelled here to keep start-up light (importing the
#: reports package costs seconds; tests/test_reports.py keeps the two equal).
REPORT_SCOPES = ("lecture", "full")


def _image_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x64, got {text!r}") from None
    return h, w


def _loader_options(benchmark: str, pairs: list[str]) -> dict:
    """``key=value`` loader options, values parsed as YAML and typed by the loader's signature."""
    from reidlab.data.formats import get_format
    from reidlab.recipes.schema import check_options, parse_value, signature_types

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"loader option {pair!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = parse_value(value)
    accepted = signature_types(get_format(benchmark).load, skip=("root",))
    check_options(f"{benchmark} loader option -o ", options, accepted)
    return options


def _notebook_parameter(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` → (key, value); VALUE is a Python literal (3, 0.1, [0, 1], True, None) or else a string."""
    key, value = _key_value(text, dotted=False)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _recipe_override(text: str) -> tuple[str, object]:
    """``SECTION.KEY=VALUE`` (dotted key) → (key, value); VALUE is read as YAML (true, null, 3, 1.0e-3, [0, 1])."""
    from reidlab.recipes.schema import parse_value

    key, value = _key_value(text, dotted=True)
    return key, parse_value(value)


def _key_value(text: str, dotted: bool) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not all(part.isidentifier() for part in (key.split(".") if dotted else [key])):
        kind = "a dotted name such as train.epochs" if dotted else "a Python name"
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY {kind}, got {text!r}")
    return key, value


def cmd_data_synth(args: argparse.Namespace) -> int:
    from reidlab.data.synthetic import synthesize

    summary = synthesize(args.like, args.root, seed=args.seed, num_ids=args.num_ids,
                         image_size=args.image_size, degradations=args.degradations,
                         overwrite=args.overwrite, progress=not args.no_progress)
    print(summary)
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from reidlab.data.verify import verify

    report = verify(args.benchmark, args.root, manifest=args.manifest, quick=args.quick,
                    progress=not args.no_progress)
    print(report.render())
    return 0 if report.ok else 1


def cmd_data_info(args: argparse.Namespace) -> int:
    from reidlab.data.formats import load_split
    from reidlab.data.manifests import format_statistics

    split = load_split(args.benchmark, args.root, **_loader_options(args.benchmark, args.option))
    print(format_statistics(split))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from reidlab.eval.checks import check_features_file
    from reidlab.eval.metrics import evaluate_features_file

    with warnings.catch_warnings(record=True) as caught:  # partial zero rows: a "warning:" line, then the metrics
        warnings.simplefilter("always")
        check_features_file(args.features)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    result = evaluate_features_file(args.features, args.protocol, max_rank=args.max_rank)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(result.format())
    return 0


def cmd_leaderboard_add(args: argparse.Namespace) -> int:
    import pandas as pd

    from reidlab.studies.benchmark import features_dir_scores, leaderboards
    from reidlab.viz.tables import to_markdown

    theirs = features_dir_scores(args.name, args.features_dir)
    scores_file = args.board / "tables" / "scores.csv"
    if not scores_file.is_file():
        raise ConfigError(f"{scores_file}: no leaderboard scores; run notebook 06 first "
                          "(reidlab report notebooks/06_benchmark.ipynb) or pass --board")
    ours = pd.read_csv(scores_file)
    ours = ours[ours["benchmark"].isin(theirs["benchmark"])]
    board = leaderboards(pd.concat([ours, theirs], ignore_index=True))
    if args.output:
        board.to_csv(args.output)
    for benchmark, rows in board.groupby(level="benchmark", sort=False):
        print(f"\n## {benchmark}\n")
        print(to_markdown(rows.droplevel("benchmark").dropna(axis=1, how="all")))
    return 0


def cmd_bench_eval(args: argparse.Namespace) -> int:
    from reidlab.bench import EVAL_COLUMNS, bench_eval

    return _print_bench(bench_eval(seed=args.seed, repeats=args.repeats, threads=args.threads,
                                   cases=tuple(args.cases.split(","))), args.json, EVAL_COLUMNS)


def cmd_bench_cluster(args: argparse.Namespace) -> int:
    from reidlab.bench_cluster import CLUSTER_COLUMNS, bench_cluster

    sizes = tuple(int(n) for n in args.sizes.split(","))
    return _print_bench(bench_cluster(sizes, seed=args.seed, threads=args.threads, skip_peer=args.skip_peer),
                        args.json, CLUSTER_COLUMNS)


def _print_bench(rows: Iterable[dict], as_json: bool, columns: list[tuple[str, str]]) -> int:
    """One JSON object per case as it finishes, or a table at the end."""
    from reidlab.bench import format_rows

    done = []
    for row in rows:
        if as_json:
            print(json.dumps(row), flush=True)
        done.append(row)
    if not as_json:
        print(format_rows(done, columns))
    return 0


def _bench_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP / BLAS / torch threads of the measuring processes (default: the libraries')")
    parser.add_argument("--json", action="store_true", help="print one JSON object per case")


def cmd_report(args: argparse.Namespace) -> int:
    from reidlab.reports import NOTEBOOK_PATTERN, find_notebooks, run_notebooks

    if args.log_output:  # papermill logs cell outputs at INFO level
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    notebooks = args.notebooks or find_notebooks("notebooks")
    if not notebooks:
        raise ValueError(f"no notebooks named and none match notebooks/{NOTEBOOK_PATTERN} in {Path.cwd()}")
    runs = run_notebooks(notebooks, profile=args.profile, dataset=args.dataset, data_root=args.data_root,
                         parameters=dict(args.parameter), reports_root=args.reports_dir, kernel_name=args.kernel,
                         log_output=args.log_output, progress=not args.no_progress, scope=args.scope)
    for run in runs:
        print(run.describe())
    print(f"index: {args.reports_dir / 'README.md'}")
    failed = [run.notebook.name for run in runs if not run.ok]
    if failed:
        print(f"error: {len(failed)} of {len(runs)} notebooks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from reidlab.engine import distributed
    from reidlab.engine.experiment import train
    from reidlab.engine.trainer import TrainConfig
    from reidlab.recipes import load_recipe

    distributed.init_distributed()
    try:
        recipe = load_recipe(args.recipe, args.profile, dict(args.override), dataset=args.dataset,
                             data_root=args.data_root)
        try:  # every section checked before any data is loaded (load_recipe checks the others)
            TrainConfig.from_dict(recipe.train)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"recipe {recipe.name!r}, section train: {error}") from None
        try:
            run = train(recipe, force=args.force, device=args.device, progress=not args.no_progress)
        except TypeError as error:  # a model.* pass-through key that the model (or timm) does not take
            raise _rejected_pass_through(error, dict(args.override)) from error
        if distributed.is_main_process():
            print(f"run: {run.run_dir}")
            print(run.evaluate().format())
    finally:
        distributed.cleanup()
    return 0


def _rejected_pass_through(error: TypeError, overrides: dict) -> Exception:
    """A :class:`ConfigError` naming the ``model.KEY`` override behind ``error``, else ``error`` itself."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    key = f"model.{match[1]}" if match else None
    if key not in overrides:
        return error
    return ConfigError(f"override {key}: the model does not accept the keyword {match[1]!r} ({error}); model keys "
                       "that the recipe does not set are passed to the model builder and to timm.create_model, "
                       "check the name")


def cmd_pretrain(args: argparse.Namespace) -> int:
    from reidlab.engine.pretrain import PretrainConfig, cluster_agreement, pretrain

    if args.agreement:
        options = {"k1": 30, "k2": 6, "eps": 0.6, "min_samples": 4}   # the peers' clustering (cluster-contrast)
        print(f"DBSCAN (eps {options['eps']}, min_samples {options['min_samples']}) on k-reciprocal Jaccard distances "
              f"(k1 {options['k1']}, k2 {options['k2']}) of {args.backbone} features, synthetic {args.agreement} "
              "training set, per modality:")
        for pretrained in (False, True):
            weights = "shipped .synth weights" if pretrained else "random weights"
            rows = cluster_agreement(args.backbone, pretrained=pretrained, like=args.agreement, **options)
            for modality, row in rows.items():
                print(f"  {weights:22s} {modality}: ARI {row['ari']:.3f}  NMI {row['nmi']:.3f}  "
                      f"{row['clusters']} clusters for {row['identities']} identities, "
                      f"{100 * row['outliers']:.0f} % outliers, {row['images']} images")
        return 0
    config = PretrainConfig(**({"steps": args.steps} if args.steps is not None else {}), seed=args.seed)
    command = " ".join(["reidlab", "pretrain", *sys.argv[2:]]) if sys.argv[1:2] == ["pretrain"] else None
    result = pretrain(args.backbone, args.out, config, progress=not args.no_progress, command=command)
    print(f"wrote {result.path} ({result.seconds:.0f} s, final train accuracy {100 * result.train_accuracy:.1f} %)")
    print(f"provenance {result.path.with_suffix('.json')}")
    print(f"register it in reidlab/models/pretrained.py: SYNTH_SHA256[{result.provenance['tag']!r}] = "
          f"{result.sha256!r}")
    return 0


PRETRAIN_EXAMPLES = """examples:
  # rebuild the shipped weights (then update SYNTH_SHA256 in reidlab/models/pretrained.py as printed)
  OMP_NUM_THREADS=1 reidlab pretrain vit_tutorial
  reidlab pretrain resnet_tutorial --out /tmp/resnet_tutorial.synth.safetensors
  # how well the shipped weights' features cluster into identities (unsupervised methods start there)
  reidlab pretrain vit_tutorial --agreement sysu_mm01

Supervised identity classification (label-smoothed CE + triplet) on the synthetic pre-training pool, whose
identities no benchmark tree can draw; see reidlab/engine/pretrain.py. Deterministic for a seed and thread count."""


TRAIN_EXAMPLES = """examples:
  reidlab train baseline_multimodal --profile tutorial
  reidlab train baseline_crossmodal --profile paper --dataset sysu_mm01 --data-root /data/reid
  # several GPUs (DDP): the training loader is sharded, the model wrapped in DistributedDataParallel
  torchrun --nproc_per_node 4 -m reidlab.cli train baseline_multimodal --profile paper --data-root /data/reid

Finished runs are cached under $REIDLAB_RUNS (default ~/.cache/reidlab/runs) by the hash of the recipe
and the code; an interrupted run resumes from its last checkpoint."""


REPORT_EXAMPLES = """examples:
  # every notebooks/NN_*.ipynb on the tutorial profile (synthetic data, CPU), full studies - what `make report` runs
  reidlab report
  # the notebooks' short lectures (their defaults, what nbval runs), into another folder
  reidlab report --scope lecture --reports-dir /tmp/lectures
  # one notebook on the quick smoke profile
  reidlab report notebooks/00_getting_started.ipynb --profile smoke
  # the paper's settings on a GPU with a real dataset copy (check the copy first: reidlab data verify)
  reidlab report notebooks/01_coen.ipynb --profile paper --dataset msvr310 --data-root /data/reid \\
      -p device=cuda -p "seeds=[0, 1, 2]"

Each notebook runs in its own folder as working directory, on this Python interpreter; papermill
injects profile, dataset, data_root (made absolute), output_dir, scope (where the notebook declares
it) and every -p into its parameters-tagged cell. Exits 1 naming the notebooks that failed; their reports say why."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reidlab",
        description="Multi-modal and visible-infrared re-identification: data, evaluation, benchmarks, reports.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also REIDLAB_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="synthesise, verify and describe benchmark trees")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    synth = data_commands.add_parser(
        "synth", help="write a synthetic benchmark in a real on-disk format",
        description="Render a procedural benchmark and write it in the official layout of FORMAT, "
                    "with its own manifest.yaml and a degradation sidecar (see docs/synthetic_dataset_card.md).")
    synth.add_argument("--like", required=True, choices=BENCHMARKS, metavar="FORMAT",
                       help=f"on-disk format to imitate: {', '.join(BENCHMARKS)}")
    synth.add_argument("--root", required=True, type=Path, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    synth.add_argument("--num-ids", type=int, default=None, help="number of identities (default: per format)")
    synth.add_argument("--image-size", type=_image_size, default=None, metavar="HxW",
                       help="size of one modality image, e.g. 128x64 (default: per format)")
    synth.add_argument("--degradations", default="default", metavar="MIX",
                       help="degradation mix: a preset (default, clean, flare_heavy, low_light, harsh) or "
                            "comma-separated name=probability, e.g. flare=0.5,noise=0.1")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing tree")
    synth.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    synth.set_defaults(func=cmd_data_synth)

    verify = data_commands.add_parser(
        "verify", help="check a dataset copy against its manifest",
        description="Check layout, file names, counts per split and modality, and (unless --quick) "
                    "that every image decodes. Exits 1 when anything is wrong.")
    verify.add_argument("benchmark", choices=BENCHMARKS, metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    verify.add_argument("root", type=Path, metavar="ROOT", help="dataset root")
    verify.add_argument("--manifest", type=Path, default=None,
                        help="manifest YAML to check against (default: data_manifests/BENCHMARK.yaml)")
    verify.add_argument("--quick", action="store_true", help="skip decoding every image")
    verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    verify.set_defaults(func=cmd_data_verify)

    info = data_commands.add_parser("info", help="print split statistics of a dataset copy")
    info.add_argument("benchmark", choices=BENCHMARKS, metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    info.add_argument("root", type=Path, metavar="ROOT", help="dataset root")
    info.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                      help="loader option, e.g. -o mode=indoor -o trial=3 (SYSU-MM01), "
                           "-o trial=2 -o direction=thermal_to_visible (RegDB)")
    info.set_defaults(func=cmd_data_info)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate precomputed features under a protocol",
        description="Rank an npz of features (query_feats, gallery_feats, query_pids, gallery_pids, "
                    "query_camids, gallery_camids; query_sceneids/gallery_sceneids for msvr310). "
                    "Features are L2-normalised before ranking.")
    evaluate.add_argument("--features", required=True, type=Path, metavar="F.npz")
    evaluate.add_argument("--protocol", required=True, choices=PROTOCOL_NAMES)
    evaluate.add_argument("--max-rank", type=int, default=50, help="CMC ranks to report (default 50)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=cmd_evaluate)

    board = commands.add_parser("leaderboard", help="place your own method on notebook 06's leaderboards")
    board_commands = board.add_subparsers(dest="leaderboard_command", required=True, metavar="ACTION")
    add = board_commands.add_parser(
        "add", help="score your features on our synthetic trees and rank them beside our methods",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate features computed elsewhere on the synthetic trees' test sets - one npz per setting "
                    "in the `reidlab evaluate` format, named rgbnt201.npz, rgbnt100.npz, msvr310.npz, "
                    "wmveid863.npz, sysu_all.npz, sysu_indoor.npz, regdb_v2i.npz or regdb_i2v.npz - under the "
                    "benchmark's protocol, and print each benchmark's leaderboard with the new row.",
        epilog="example:\n  reidlab leaderboard add --name 'my method' --features-dir features/\n\n"
               "SYSU-MM01 files hold the first gallery draw (our rows average ten). The rows of ours come from "
               "BOARD/tables/scores.csv (notebook 06's report).")
    add.add_argument("--name", required=True, help="the row's name")
    add.add_argument("--features-dir", required=True, type=Path, metavar="DIR", help="folder of <setting>.npz files")
    add.add_argument("--board", type=Path, default=Path("reports/tutorial/06_benchmark"),
                     help="notebook 06's report folder (default: reports/tutorial/06_benchmark)")
    add.add_argument("--output", type=Path, default=None, metavar="CSV", help="also write the leaderboards here")
    add.set_defaults(func=cmd_leaderboard_add)

    bench = commands.add_parser("bench", help="performance benchmarks (figures, not tests)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bench_eval_parser = bench_commands.add_parser(
        "eval", help="time and peak memory of the metrics vs the peers' eval_func",
        description="RGBNT100 scale (1715 x 8575), a 10-trial SYSU-MM01 all-search evaluation and a "
                    "20,000 x 200,000 case (ours only); each case in a fresh process.")
    bench_eval_parser.add_argument("--seed", type=int, default=0)
    bench_eval_parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    bench_eval_parser.add_argument("--cases", default="rgbnt100,sysu,large", help="comma-separated cases")
    _bench_common(bench_eval_parser)
    bench_eval_parser.set_defaults(func=cmd_bench_eval)
    bench_cluster_parser = bench_commands.add_parser(
        "cluster", help="k-reciprocal Jaccard + DBSCAN: ours vs the peers' dense algorithm",
        description="Clustered 2048-d features, k1=30, k2=6, eps=0.6, min_samples=4; time, peak memory (ru_maxrss "
                    "of a fresh process per run) and identical neighbour sets / Jaccard / labels. The peer needs "
                    "~6.6 GB and about a minute at N=22258.")
    bench_cluster_parser.add_argument("--sizes", default="5000,11909,22258", help="comma-separated N")
    bench_cluster_parser.add_argument("--seed", type=int, default=0)
    bench_cluster_parser.add_argument("--skip-peer", action="store_true", help="time ours only")
    _bench_common(bench_cluster_parser)
    bench_cluster_parser.set_defaults(func=cmd_bench_cluster)

    train = commands.add_parser(
        "train", help="train a recipe (resumable, cached; DDP under torchrun) and evaluate it",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_EXAMPLES,
        description="Train RECIPE (reidlab/recipes/RECIPE.yaml) for a profile, then print its test metrics.")
    train.add_argument("recipe", metavar="RECIPE", help="recipe name, e.g. baseline_multimodal")
    train.add_argument("--profile", default="tutorial", help="smoke, tutorial (default) or paper")
    train.add_argument("--dataset", default=None, help=f"benchmark instead of the recipe's: {', '.join(BENCHMARKS)}")
    train.add_argument("--data-root", type=Path, default=None,
                       help="root of a real dataset copy (default: the recipe's synthetic tree)")
    train.add_argument("-o", "--override", action="append", default=[], type=_recipe_override,
                       metavar="KEY=VALUE",
                       help="recipe override SECTION.KEY=VALUE, VALUE read as YAML (true, null, 5, 1.0e-3, [1, 2]), "
                            "e.g. -o train.epochs=5 -o model.shared=true; unknown keys and wrong types are refused "
                            "(model.* keys unknown to the recipe are passed to timm)")
    train.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    train.add_argument("--force", action="store_true", help="retrain even if a finished run is cached")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(func=cmd_train)

    pretrain = commands.add_parser(
        "pretrain", help="pre-train a tutorial backbone on the synthetic pool (its .synth weights)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PRETRAIN_EXAMPLES,
        description="Pre-train BACKBONE (a tutorial preset) and write its weights with a JSON provenance.")
    pretrain.add_argument("backbone", metavar="BACKBONE", help="vit_tutorial or resnet_tutorial")
    pretrain.add_argument("--out", type=Path, default=None,
                          help="weight file (default: the shipped reidlab/weights/BACKBONE.synth.safetensors)")
    pretrain.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped build's)")
    pretrain.add_argument("--seed", type=int, default=0, help="seed of the pool and of the training (default 0)")
    pretrain.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pretrain.add_argument("--agreement", metavar="FORMAT", default=None,
                          help="train nothing: print the ARI / NMI of DBSCAN pseudo-labels against the true identities "
                               "on the synthetic FORMAT tree's training set, random vs shipped weights")
    pretrain.set_defaults(func=cmd_pretrain)

    report = commands.add_parser(
        "report", help="execute notebooks with papermill into reports/ and rewrite the index",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPORT_EXAMPLES,
        description="Execute notebooks into REPORTS/<profile>/<notebook>/ (executed notebook, figures/, tables/, "
                    "metrics.json with provenance) and rewrite REPORTS/README.md. A failing notebook does not "
                    "stop the others.")
    report.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK",
                        help="notebooks to run (default: every notebooks/NN_*.ipynb, in order)")
    report.add_argument("--profile", default="tutorial",
                        help="recipe profile: tutorial (default, CPU minutes, synthetic data), paper (GPU, "
                             "the papers' settings) or smoke (seconds)")
    report.add_argument("--dataset", default=None,
                        help=f"benchmark to use instead of the notebook's synthetic default: {', '.join(BENCHMARKS)}")
    report.add_argument("--data-root", type=Path, default=None, help="root of the dataset copy (with --dataset)")
    report.add_argument("-p", "--parameter", action="append", default=[], type=_notebook_parameter,
                        metavar="KEY=VALUE", help="extra notebook parameter; VALUE is a Python literal "
                                                  "(3, 0.5, [0, 1], True, None) or else a string")
    report.add_argument("--scope", choices=REPORT_SCOPES, default="full",
                        help="full (default): every ablation seed, control and sweep of each paper notebook's study; "
                             "lecture: the notebook's own default, its short walk-through (what nbval runs)")
    report.add_argument("--reports-dir", type=Path, default=Path("reports"), help="reports root (default: reports)")
    report.add_argument("--kernel", default=None,
                        help="Jupyter kernel name (default: the notebook's python3 = this interpreter)")
    report.add_argument("--log-output", action="store_true", help="stream the notebooks' outputs to the terminal")
    report.add_argument("--no-progress", action="store_true", help="hide the per-cell progress bar")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected failures (:func:`reidlab.errors.explain`) print one ``error:`` block and exit 2
    (1 for a run that failed); ``--debug`` or ``REIDLAB_DEBUG=1`` shows their traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:
        explained = None if debug_enabled(args.debug) else explain(error)
        if explained is None:
            raise
        message, code = explained
        print(f"error: {message}\n  (run with --debug or REIDLAB_DEBUG=1 for the traceback)", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
