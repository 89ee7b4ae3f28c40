"""Checks a glTF before anything is stored: structure, resources, extensions, commerce rules.

``checks.validate(path, placement, file_bytes)`` reads a ``.glb`` or an
unpacked ``.gltf`` (its resources beside it), runs Shoplens' own checks and the
Khronos glTF validator (when Node and ``gltf-validator`` are installed), and
returns the parsed asset with a :class:`~shoplens.ar_assets.report.Report`.
Any error means the upload is refused. One module per kind of check:

- ``resources``: the bytes behind buffer and image URIs (only inside the upload);
- ``structure``: buffer views, accessors, references between objects, extensions;
- ``images``: every texture decodes, and its size;
- ``commerce``: placements and the 3D Commerce recommendations (warnings);
- ``khronos``: the Khronos validator's messages merged into the report;
- ``checks``: the entry point running them in order.
"""
