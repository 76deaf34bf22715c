"""What each command's `--json` prints: the keys of its one JSON object and what each holds.

The reference page (`python -m mnistres.cli.reference`) is made from this table, and
tests/test_reference.py runs every command with `--json` and checks that its object has exactly these
keys (those marked with a condition only when it holds), so the page cannot drift from the output.
"""

from __future__ import annotations

# command -> key -> (what it holds, when it is there: "" for always)
JSON_OUTPUTS: dict[str, dict[str, tuple[str, str]]] = {
    "train": {
        "run_dir": ("The run directory.", ""),
        "status": ("completed, diverged, interrupted or failed (pruned: a tune trial).", ""),
        "message": ("Why it stopped, when not simply completed; else null.", ""),
        "history": ("The epochs, as metrics.jsonl holds them.", ""),
        "summary": ("summary.json, as written.", ""),
    },
    "sweep": {
        "directory": ("The sweep directory.", ""),
        "points": ("One object per point: name, values, seed, status, message, kept (finished before and kept).",
                   ""),
        "results": ("The end table: headers, rows.", ""),
        "report": ("The report's path; null with --no-report.", ""),
    },
    "tune": {
        "directory": ("The tune directory.", ""),
        "study": ("The study's name in its storage.", ""),
        "storage": ("Where the study lives: a database URL, or a journal file's path.", ""),
        "trials": ("The study's trials by how they ended: completed, pruned, failed, running elsewhere.", ""),
        "best": ("The best trial: trial (its number), run (its run directory), held_out_acc (what the search "
                 "maximised), params (the chosen settings), test (its best.pt on the test set, as "
                 "best-on-test.json holds it); null while no trial completed.", ""),
    },
    "report": {
        "report": ("The report's path.", ""),
        "figures": ("The figures' paths.", ""),
        "studies": ("One object per study: title, headers, rows (the results table), observations.", ""),
    },
    "eval": {
        "checkpoint": ("The checkpoint.", ""),
        "epoch": ("The epoch it was saved at.", ""),
        "dataset": ("What was measured: a dataset name, or the images folder.", ""),
        "split": ("test, train, run-train, run-val; for --images: preprocessed or as given.", ""),
        "scored": ("The images scored, in words.", ""),
        "trained_on": ("The dataset the checkpoint was trained on.", ""),
        "notes": ("Things to know about the result (a model measured on another dataset, ...).", "when any"),
        "skipped": ("Files that could not be used: file, error.", "with --images"),
        "images": ("How many images were scored.", ""),
        "loss": ("Mean cross-entropy.", ""),
        "accuracy": ("Share classified right.", ""),
        "per_class": ("Per class: class, support, accuracy, precision, recall, f1 (null where undefined).", ""),
        "confusion_matrix": ("Counts; rows: true class, columns: predicted.", ""),
        "device": ("Where it ran, in words.", ""),
        "mistakes": ("total, source, figure (null unless -o is given), shown: index or file, label, predicted, "
                     "confidence.", "with --mistakes"),
    },
    "predict": {
        "checkpoint": ("The checkpoint.", ""),
        "epoch": ("The epoch it was saved at.", ""),
        "device": ("Where it ran.", ""),
        "preprocess": ("Whether images were brought into MNIST's form (false with --no-preprocess).", ""),
        "predictions": ("One per image: file, predicted, confidence, top (class, probability); or file, error.", ""),
        "skipped": ("What the folders given hold that is not read: file, error.", ""),
    },
    "export": {
        "checkpoint": ("The checkpoint.", ""),
        "output": ("The file written.", ""),
        "format": ("ONNX or torch.export, from the file's suffix (.onnx, .pt2).", ""),
        "checked_on": ("The images the file was checked on.", ""),
        "input": ("What the model takes.", ""),
        "output_values": ("What it gives.", ""),
        "checked_images": ("How many images it was checked on (0: not run).", ""),
        "max_abs_difference": ("Largest logit difference from the checkpoint.", "when checked"),
        "same_prediction": ("Share of images with the same predicted class.", "when checked"),
        "note": ("Why it was not checked.", "when not checked"),
    },
    "summary": {
        "title": ("The model, in words.", ""),
        "layers": ("One object per layer: layer, type, output_shape, parameters.", ""),
        "totals": ("Parameter totals.", ""),
    },
    "plugins": {
        "registries": ("Kind -> entries: name, help, options (defaults), source, accepts (per option).", ""),
        "plugins": ("The plugins that loaded: name, source.", ""),
        "failed_plugins": ("The plugins that failed: name, source, error.", ""),
    },
    "runs": {
        "folder": ("The folder listed.", ""),
        "settings": ("The settings whose values differ between the listed runs.", ""),
        "runs": ("One per run, newest first: name, path, status, note, epochs_done, epochs_planned, best_val_acc, "
                 "final_val_acc, settings, started, seconds, bytes, hint, about (tags: its own and its sweep's or search's; "
                 "note: the user's).", ""),
    },
    "runs tag": {
        "path": ("The run, sweep or tune directory.", ""),
        "tags": ("Its tags, after the change.", ""),
        "note": ("Its note, after the change (\"\" for none).", ""),
    },
    "runs rm": {
        "chosen": ("The directories chosen: path, name, kind (run, sweep, search), status, bytes.", ""),
        "kept": ("What a filter matched but keeps, each with why (in use, a search's trial).", ""),
        "bytes": ("Their size in all.", ""),
        "dry_run": ("Whether --dry-run was given.", ""),
        "done": ("Whether they were removed (false: a dry run, nothing chosen, or the question answered no).", ""),
    },
    "runs gc": {
        "folder": ("The folder looked through.", ""),
        "files": ("What was (or, with --dry-run, would be) removed: path, run, bytes, why.", ""),
        "bytes": ("Their size in all.", ""),
        "dry_run": ("Whether --dry-run was given.", ""),
    },
}
