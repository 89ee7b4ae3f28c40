"""The HTML page that shows a product's model and opens AR (Scene Viewer / Quick Look).

The model-viewer element carries ``data-anchoring`` (the AR block's ``anchoring``)
for apps that embed the page. Quick Look reads the anchoring from the USDZ itself;
model-viewer's ``ar-placement`` knows only floor and wall, so face items are
placed on a surface by Scene Viewer and WebXR, true to scale.

A worn product (face, head, wrist, foot) links to its try-on page (``tryon_url``).

A model with ``KHR_materials_variants`` gets a variant picker, filled from what
model-viewer found in the loaded file (``availableVariants``), so it can only
offer variants the viewer can show.

When the block's ``usdz_degraded`` is true the page says that the iPhone (Quick
Look) view is simplified, and ``data-usdz-degraded`` on the model-viewer
element tells embedding apps.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

STATIC_SCRIPT = "/ar/static/model-viewer.min.js"


def viewer_html(
    title: str, block: dict[str, Any], back_url: str, material_variant: str | None = None
) -> str:
    """A self-contained page; every script comes from our own origin."""
    src = escape(block["glb_mobile_url"], quote=True)
    ios = block.get("usdz_url")
    # Quick Look shows one file: the chosen material variant's own USDZ.
    by_variant = {
        str(v.get("name")): v
        for v in block.get("variants", [])
        if v.get("source") == "KHR_materials_variants" and v.get("usdz_url")
    }
    if material_variant in by_variant:
        chosen = by_variant[material_variant]
        ios, degraded_block = chosen["usdz_url"], chosen
    else:
        degraded_block = block
    variant_usdz = json.dumps({n: v["usdz_url"] for n, v in by_variant.items()})
    ios_attr = f' ios-src="{escape(ios, quote=True)}"' if ios else ""
    anchoring = str(block.get("anchoring", "plane-horizontal"))
    placement = "wall" if anchoring == "plane-vertical" else "floor"
    variant_attr = (
        f' variant-name="{escape(material_variant, quote=True)}"' if material_variant else ""
    )
    tryon = block.get("tryon_url")
    if tryon and material_variant:
        tryon += ("&" if "?" in tryon else "?") + f"material_variant={quote(material_variant)}"
    tryon_link = (
        f'\n  <a id="tryon" href="{escape(tryon, quote=True)}">Try it on</a>' if tryon else ""
    )
    dims = block.get("dimensions_m", {})
    size = " x ".join(f"{float(dims.get(k, 0)):.2f}" for k in ("x", "y", "z"))
    t = escape(title)
    degraded = bool(degraded_block.get("usdz_degraded")) and bool(ios)
    # Shown, not hidden: a shopper on iPhone sees less than the model (see the report).
    degraded_note = (
        '<span id="usdz-degraded" data-usdz-degraded="true">'
        "On iPhone the AR view shows a simplified look</span>"
        if degraded
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t} in 3D</title>
<link rel="icon" href="data:,">
<script>
  // Decoders would otherwise come from a third-party CDN (Draco, KTX2) or not at all
  // (meshopt, which the mobile variants use): keep them all on our origin.
  self.ModelViewerElement = Object.assign(self.ModelViewerElement || {{}}, {{
    meshoptDecoderLocation: "/ar/static/meshopt_decoder.js",
    dracoDecoderLocation: "/ar/static/draco/",
    ktx2TranscoderLocation: "/ar/static/basis/",
  }});
</script>
<script type="module" src="{STATIC_SCRIPT}"></script>
<style>
  body {{ margin: 0; font-family: system-ui, sans-serif; background: #f4f4f4; }}
  header {{ padding: 12px 16px; display: flex; gap: 16px; align-items: baseline; }}
  h1 {{ font-size: 1.1rem; margin: 0; }}
  model-viewer {{ width: 100vw; height: calc(100vh - 56px); background: #ffffff; }}
  #variant-picker select {{ font: inherit; padding: 4px; }}
  #ar-button {{ position: absolute; bottom: 24px; left: 50%; transform: translateX(-50%);
    padding: 12px 20px; border-radius: 24px; border: none; background: #1a73e8; color: #fff;
    font-size: 1rem; }}
</style>
</head>
<body>
<header>
  <a id="back" href="{escape(back_url, quote=True)}">&larr; Back</a>
  <h1 id="title">{t}</h1>
  <span id="size">{escape(size)} m</span>{tryon_link}
  {degraded_note}
  <label id="variant-picker" hidden>Variant <select id="variant"></select></label>
</header>
<model-viewer id="model" src="{src}"{ios_attr} data-usdz-degraded="{str(degraded).lower()}"
  data-variant-usdz="{escape(variant_usdz, quote=True)}" alt="{t}"
  ar ar-modes="webxr scene-viewer quick-look"
  ar-placement="{placement}" ar-scale="fixed" camera-controls touch-action="pan-y"
  shadow-intensity="1"{variant_attr} data-anchoring="{escape(anchoring, quote=True)}">
  <button slot="ar-button" id="ar-button">View in your space</button>
</model-viewer>
<script type="module">
  const model = document.getElementById("model");
  const picker = document.getElementById("variant-picker");
  const select = document.getElementById("variant");
  function fill() {{
    const names = model.availableVariants || [];
    const current = model.variantName;
    // "As modelled" is the file's own materials (variantName null), not always a variant.
    select.replaceChildren(new Option("As modelled", "", false, !current),
      ...names.map((n) => new Option(n, n, false, n === current)));
    picker.hidden = names.length === 0;
    picker.dataset.variants = String(names.length);  // tells scripts (and tests) it is filled
  }}
  model.addEventListener("load", fill);
  if (model.loaded) fill();  // a small cached model can load before this script runs
  const usdzByVariant = JSON.parse(model.dataset.variantUsdz || "{{}}");
  const defaultUsdz = model.getAttribute("ios-src");
  select.addEventListener("change", () => {{
    model.variantName = select.value || null;
    // Quick Look has no variant switch: hand it the variant's own USDZ.
    const usdz = usdzByVariant[select.value] || defaultUsdz;
    if (usdz) model.setAttribute("ios-src", usdz);
  }});
</script>
</body>
</html>
"""
