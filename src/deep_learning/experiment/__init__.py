"""One tracked run: resume, assemble, train through per-epoch callbacks, finish; fit, inference and checkpoints."""
