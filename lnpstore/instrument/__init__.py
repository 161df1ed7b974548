"""Images in: the Yokogawa CV7000/CV8000 file layout and metadata, plate maps, TIFF stacks, ingest."""
