"""``python -m pipeline.data.synth OUT_DIR [--preset demo] ...`` (see :mod:`.cli`)."""

from pipeline.data.synth.cli import main

raise SystemExit(main())
