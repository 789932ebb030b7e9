"""One grading of a class folder, from the command-line options to the verified grades and the summary page.

`grade.py` parses; this module does the rest in order: check the sandbox,
decode the validation images into the grader's private copy, refuse to
resume onto grades of other images, grade (`grading.schedule`), check the
images are unchanged, write grades.json and grades.html.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from core.alphabet import Alphabet
from core.archive import ArchiveLimits
from data.dataset import describe_skipped, load_labelled_folder
from grading import course, grades, sandbox
from grading.inputs import SCALES
from grading.report import write_report
from grading.schedule import grade_class


def resolve_options(args) -> tuple[grades.GradingOptions, int]:
    """The grading options and the number of jobs from `grade.py`'s arguments.

    Raises:
        ValueError: A bad value, naming its option.
    """
    if not 0 <= args.threshold <= 1 or args.time_limit <= 0 or args.batch_size < 1 or args.process_limit < 1:
        raise ValueError("--threshold must lie in [0, 1]; --time-limit, --batch-size, --process-limit must be positive")
    scales = {}
    for pair in args.input_scale_for:
        name, _, scale = pair.partition("=")
        if not name or scale not in SCALES:
            raise ValueError(f"--input-scale-for takes SUBMISSION=SCALE with SCALE one of {SCALES}. Received: {pair}")
        scales[name] = scale
    cpus = len(sandbox.available_cores())
    if args.cores is not None and not 1 <= args.cores <= cpus:
        raise ValueError(f"--cores must lie in 1..{cpus} (the CPUs here). Received: {args.cores}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be positive. Received: {args.jobs}")
    jobs = args.jobs or max(1, cpus // (args.cores or cpus))
    limits = sandbox.Limits(
        _size(args.memory_limit, "--memory-limit"), _size(args.file_size_limit, "--file-size-limit"), args.process_limit
    )
    model_bytes = _size(args.max_model_size, "--max-model-size")
    output = Path(args.output)
    options = grades.GradingOptions(
        train=args.train,
        time_limit=args.time_limit,
        data_folders={"capts_train": Path(args.train_dir).resolve(), "capts_val": Path(args.val_dir).resolve()},
        model_file=args.model_file,
        input_scale=args.input_scale,
        input_scales=scales,
        threshold=args.threshold,
        batch_size=args.batch_size,
        python=args.python,
        logs=(output.parent / f"{output.stem}_logs").resolve(),
        sandbox=sandbox.Sandbox(args.sandbox, limits, args.cores),
        archive_limits=ArchiveLimits(member_bytes=model_bytes, total_bytes=model_bytes),
    )
    return options, jobs


def _size(text: str, option: str) -> int:
    try:
        return sandbox.parse_size(text)
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


def grade_folder(args, announce=print) -> dict:
    """Grades the class folder `args.submissions` as `grade.py`'s arguments say.

    Raises:
        FileNotFoundError, ValueError, sandbox.SandboxUnavailableError: Before any grading starts.
        KeyboardInterrupt: After stopping the gradings in progress (the finished rows are kept).

    Returns:
        rows, output, report, val_images, skipped_val_images, val_sha256, images_intact,
        val_dir_unchanged, seconds.
    """
    options, jobs = resolve_options(args)
    output = Path(args.output)
    submissions = grades.list_submissions(args.submissions)
    if args.train != "never":
        for name, folder in options.data_folders.items():
            if not folder.is_dir():
                raise FileNotFoundError(f"Course folder for {name}/ not found: {folder} (--train-dir, --val-dir)")
    # After the folders: a wrong path is named first, on any machine.
    if args.sandbox == "bwrap" and args.train != "never" and not args.scheduler:
        sandbox.check_sandbox(options.sandbox)
    alphabet = Alphabet()
    # Decoded afresh (no cache): a cache in the course folder is exactly what a submission could have altered.
    loaded = load_labelled_folder(
        args.val_dir, alphabet, labels_file=args.labels, cache=False, strict=args.strict_data,
        corrections=args.label_corrections,
    )  # fmt: skip
    val = course.grading_images(loaded.images, loaded.codes, loaded.labels)
    listing = course.folder_listing_hash(args.val_dir)
    earlier = output.with_suffix(".json")
    if not args.regrade and output.exists() and earlier.exists():
        previous = json.loads(earlier.read_text()).get("val_sha256")
        if previous and previous != val.sha256:
            raise ValueError(f"{output} was graded on other validation images; pass --regrade or another --output")
    if loaded.skipped:
        announce(describe_skipped(loaded, args.val_dir))
    where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else f"{jobs} at once"
    announce(f"Grading {len(submissions)} submissions on {len(val)} images of {args.val_dir}/, {where}")
    summary = {
        "submissions": str(args.submissions),
        "val_images": len(val),
        "skipped_val_images": len(loaded.skipped),
        "val_sha256": val.sha256,
        "jobs": jobs,
        "scheduler": args.scheduler,
    }
    grades.write_json({**options.to_json(), **summary}, earlier)
    private = Path(tempfile.mkdtemp(prefix="captcha-kit-images-"))  # Mode 0700: the grader's alone.
    started = time.time()
    try:
        course.write_private_copy(val, private)
        rows = grade_class(
            submissions,
            private,
            alphabet,
            options,
            output,
            jobs=jobs,
            scheduler=args.scheduler,
            regrade=args.regrade,
            val_sha256=val.sha256,
            labels=args.labels,
            corrections=args.label_corrections,
            strict=args.strict_data,
        )
        intact = course.fingerprint(val.images, val.codes) == val.sha256 and course.copy_intact(private, val.sha256)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    checks = {"images_intact": intact, "val_dir_unchanged": course.folder_listing_hash(args.val_dir) == listing}
    report = write_report(rows, output.with_suffix(".html"), options.threshold, alphabet.length)
    grades.write_json({**options.to_json(), **summary, **checks}, earlier)
    return {
        **summary,
        **checks,
        "rows": rows,
        "output": output,
        "report": report,
        "logs": options.logs,
        "seconds": time.time() - started,
    }
