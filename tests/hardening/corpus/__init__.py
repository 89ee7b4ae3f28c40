"""Generated corpora of hostile files: malformed images and malformed 3D uploads.

Everything is made here from a few small valid files (deterministic seeds), so
the corpus needs no fixtures on disk and is the same on every run (up to the
timestamps ``zipfile`` writes). ``images.malformed_images`` (mutations of
valid files plus the hand-made cases of ``image_lies``) and
``models3d.malformed_3d`` are what the hardening tests upload.
"""

Case = tuple[str, bytes]
