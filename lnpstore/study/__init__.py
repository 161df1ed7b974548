"""The published study on a tracked plate: registration, targets, crops, figures, report, the run pipeline."""
