"""Moved to `models.reader`, the one prediction path; re-exported here until the last importers switch."""

from models.reader import (  # noqa: F401
    PASS_THRESHOLD,
    add_verdict,
    evaluate_model,
    evaluate_predictions,
    format_accuracies,
)
