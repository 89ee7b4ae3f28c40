"""models: image bytes -> L2-normalised float32 vectors.

What the other parts call:

- :mod:`shoplens.models.decode`: ``decode_image(data, *, max_pixels, crop,
  draft_size)``, ``sniff_format``, ``SUPPORTED_FORMATS``, ``Crop``,
  ``parse_crop``, ``encode_jpeg``, ``encode_webp``.
- :mod:`shoplens.models.registry`: ``load_embedder(settings)`` (ONNX Runtime:
  the model cache's export, else the one shipped in the package, else
  exported on first use), ``load_text_embedder(settings)``,
  ``load_torch_embedder(name, settings)``, ``export_model(name, settings)``,
  ``available_models(settings)``, ``cached_model_dir(name, settings)``,
  ``model_dir(name, settings)``; each walks one table of model families
  (effnet, its int8 variant, OpenCLIP).
- :mod:`shoplens.models.progress`: ``step(what, total=...)``, how a slow step
  shows itself (a bar on a terminal, log lines otherwise).
- :mod:`shoplens.models.base`: ``ImageEmbedder`` / ``TextEmbedder`` protocols
  (an image embedder's ``head_dims`` comes from its export's metadata),
  ``PreprocessConfig``, ``preprocess``, ``preprocess_batch``, ``l2_normalise``.
- :mod:`shoplens.models.localise`: ``white_background_mask(rgb)``, ``mask_box``:
  where the product is in a studio photo (free: it stands on white).

Inside: :mod:`~shoplens.models.cache` owns the model cache (folder naming,
``meta.json``, locking, atomic placement); :mod:`~shoplens.models.export` and
:mod:`~shoplens.models.quantize` fill its folders; :mod:`~shoplens.models.packaged`
holds the default model's export shipped in the package (no torch, no weights
packages needed to serve it); ``effnet`` / ``openclip``
build the eager networks; ``onnx_embedder`` runs an export.

Torch, timm and open_clip are imported only inside the functions that export
or run eager models, so serving needs none of them once a model is exported.
"""
