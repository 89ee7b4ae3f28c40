"""AR assets: a shop's glTF/GLB upload -> checked, optimised files served for AR.

- ``pipeline.process``: one upload from bytes to files ready to store
  (``zipin`` unpacks zips safely, ``pack``/``optimise`` make one GLB and the
  mobile variant, ``validation/`` checks it, ``usdz/`` converts for iOS with
  the anchoring from ``anchoring``, one USDZ per material variant);
  ``gltf`` reads glTF; ``fidelity`` measures true sizes and writes the
  report's USDZ section; ``report`` is what the shop is told.
- ``store``: content-addressed files plus one row per product and variant.
- ``service.ArService``: the part as the service and the CLI use it (ingest,
  reconvert, AR blocks); ``routes.build_router``: its HTTP routes, given their
  dependencies by the service (``api_docs``: what OpenAPI says of them);
  ``viewer``: the viewer page; ``commands``: ``shoplens ar``; ``tools``: the
  Node tools it drives.

May import ``shoplens.files``, ``shoplens.ids``, ``shoplens.errors`` and
``shoplens.config``; never ``shoplens.service``.
"""
