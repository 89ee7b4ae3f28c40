// Shoplens demo page: pick or take a photo, optionally mark a region, search.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { photo: null, region: null, categories: new Set(), answered: 0, request: null, look: null };

  const preview = $("preview");
  const stage = $("stage");
  const box = $("box");
  const status = $("status");
  const results = $("results");
  const heading = $("results-heading");
  const searchButton = $("search");

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function setPhoto(blob) {
    state.photo = blob;
    state.region = null;
    showRegions(null);
    box.hidden = true;
    $("clear-box").hidden = true;
    showPreview(blob, "local");
    stage.hidden = false;
    $("hint").hidden = false;
    searchButton.disabled = false;
  }

  function showPreview(blob, source) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.dataset.source = source;
    preview.src = URL.createObjectURL(blob);
  }

  // Most browsers cannot show HEIC/HEIF (iPhone photos): when the photo does not
  // load, the server converts it to a JPEG in the orientation search uses, so a
  // region drawn on it is the region searched. The search itself sends the original.
  preview.addEventListener("error", async () => {
    const photo = state.photo;
    if (!photo || preview.dataset.source !== "local") return;
    preview.dataset.source = "converting";
    const form = new FormData();
    form.append("image", photo, "photo");
    try {
      const response = await fetch("v1/preview?w=1024", { method: "POST", body: form });
      if (state.photo !== photo) return;  // another photo was picked meanwhile
      if (!response.ok) {
        setStatus("This photo cannot be shown: " + await errorMessage(response), true);
        return;
      }
      showPreview(await response.blob(), "server");
    } catch (e) {
      setStatus("Could not reach the server: " + e.message, true);
    }
  });

  function filterParams() {
    const p = new URLSearchParams();
    p.set("k", $("k").value);
    const category = $("category").value.trim();
    if (category) p.append("category", category);
    if ($("in-stock").checked) p.set("in_stock", "true");
    const min = $("min-price").value;
    const max = $("max-price").value;
    if (min !== "") p.set("min_price", min);
    if (max !== "") p.set("max_price", max);
    return p;
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "the server answered " + response.status;
  }

  async function search() {
    if (!state.photo) return;
    const params = filterParams();
    if (state.region) params.set("crop", state.region.map((v) => v.toFixed(4)).join(","));
    // Shop the look: the server also finds the products in the photo (regions=auto).
    // A drawn box is the shopper's own region: it is searched alone.
    if ($("look").checked && !state.region) params.set("regions", "auto");
    const form = new FormData();
    form.append("image", state.photo, "photo.jpg");
    const title = state.region ? "Matches for the marked region" : "Matches for your photo";
    await run("v1/search?" + params.toString(), { method: "POST", body: form }, "Searching…", title);
  }

  async function similar(productId, title) {
    const params = filterParams();
    await run("v1/products/" + encodeURIComponent(productId) + "/similar?" + params.toString(),
      { method: "GET" }, "Finding products like " + title + "…", "More like " + title);
  }

  async function run(url, init, busy, title) {
    // The newest request wins: drawing a box or tapping a sample while a search
    // runs must not let the older answer overwrite the newer one.
    if (state.request) state.request.abort();
    const request = new AbortController();
    state.request = request;
    searchButton.disabled = true;
    setStatus(busy);
    try {
      const response = await fetch(url, { ...init, signal: request.signal });
      if (!response.ok) {
        setStatus(await errorMessage(response), true);
        return;
      }
      const body = await response.json();
      heading.textContent = title;
      heading.hidden = false;
      render(body.results);
      if (init.method === "POST") showRegions(body.regions ? body : null);
      // Phones: the grid is below the photo; bring the answer into view.
      status.scrollIntoView({ block: "start", behavior: "smooth" });
      setStatus(body.results.length
        ? body.results.length + " products in " + Math.round(body.took_ms) + " ms"
        : "No product matches these filters.");
    } catch (e) {
      if (request.signal.aborted) return;  // replaced by a newer request: it reports
      setStatus("Could not reach the server: " + e.message, true);
    } finally {
      if (state.request === request) {
        state.request = null;
        searchButton.disabled = !state.photo;
        // Count of answered requests: lets scripts (and tests) wait for the next answer.
        document.body.dataset.answered = String(++state.answered);
      }
    }
  }

  function money(price, currency) {
    if (price === null || price === undefined) return "";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(price);
    } catch (e) {
      return price.toFixed(2) + " " + (currency || "");
    }
  }

  function render(items) {
    results.textContent = "";
    const template = $("card");
    for (const item of items) {
      const card = template.content.firstElementChild.cloneNode(true);
      card.dataset.productId = item.product_id;
      const img = card.querySelector(".thumb");
      img.src = item.image_url + "?w=320";
      img.alt = item.title || item.product_id;
      card.querySelector(".title").textContent = item.title || item.product_id;
      card.querySelector(".price").textContent = money(item.price, item.currency);
      const stock = card.querySelector(".stock");
      stock.textContent = item.in_stock ? "In stock" : "Sold out";
      stock.classList.add(item.in_stock ? "in" : "out");
      card.querySelector(".score").textContent = "match " + Math.round(item.score * 100) + "%";
      card.querySelector(".more").addEventListener("click", () => similar(item.product_id, img.alt));
      if (item.ar && item.ar.viewer_url) {
        const ar = card.querySelector(".ar");
        ar.href = item.ar.viewer_url;
        ar.hidden = false;
      }
      if (item.ar && item.ar.tryon_url) {  // worn products: glasses, hats, watches, shoes
        const tryon = card.querySelector(".tryon");
        tryon.href = item.ar.tryon_url;
        tryon.hidden = false;
      }
      if (item.category && !state.categories.has(item.category)) {
        state.categories.add(item.category);
        const option = document.createElement("option");
        option.value = item.category;
        $("categories").appendChild(option);
      }
      results.appendChild(card);
    }
  }

  // Shop the look: a numbered box per region over the photo; tapping one shows its
  // results, tapping it again goes back to the whole photo's.
  function showRegions(body) {
    const layer = $("regions");
    layer.textContent = "";
    state.look = body;
    if (!body) return;
    body.regions.forEach((region, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "region";
      b.dataset.region = String(i);
      if (region.results[0]) b.dataset.productId = region.results[0].product_id;
      const name = region.label || (region.results[0] && region.results[0].title) || "product";
      b.title = b.ariaLabel = "Region " + (i + 1) + ": " + name;
      const { x, y, w, h } = region.box;
      Object.assign(b.style, { left: x * 100 + "%", top: y * 100 + "%", width: w * 100 + "%", height: h * 100 + "%" });
      const dot = document.createElement("span");
      dot.textContent = String(i + 1);
      b.appendChild(dot);
      b.addEventListener("click", () => pickRegion(b.classList.contains("active") ? -1 : i));
      layer.appendChild(b);
    });
    if (body.regions.length) {
      setStatus(body.regions.length + " products found in the photo: tap a box");
    }
  }

  function pickRegion(i) {
    const body = state.look;
    if (!body) return;
    $("regions").querySelectorAll(".region").forEach((b) => {
      b.classList.toggle("active", Number(b.dataset.region) === i);
    });
    const region = body.regions[i];
    heading.textContent = region
      ? "Region " + (i + 1) + (region.label ? ": " + region.label : "")
      : "Matches for your photo";
    render(region ? region.results : body.results);
    document.body.dataset.region = String(i);
  }

  // Region drawing: fractions of the displayed photo, which is the photo after
  // EXIF rotation, the same frame the server crops in.
  let drag = null;
  stage.addEventListener("pointerdown", (e) => {
    if (e.target.closest(".region")) return;  // a tap on a found region, not a drag
    const r = preview.getBoundingClientRect();
    drag = { r, x0: e.clientX - r.left, y0: e.clientY - r.top };
    stage.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const { r, x0, y0 } = drag;
    const x1 = Math.min(Math.max(e.clientX - r.left, 0), r.width);
    const y1 = Math.min(Math.max(e.clientY - r.top, 0), r.height);
    const left = Math.min(x0, x1), top = Math.min(y0, y1);
    const w = Math.abs(x1 - x0), h = Math.abs(y1 - y0);
    Object.assign(box.style, { left: left + "px", top: top + "px", width: w + "px", height: h + "px" });
    box.hidden = w < 4 || h < 4;
    drag.region = [left / r.width, top / r.height, w / r.width, h / r.height];
  });
  function endDrag() {
    if (!drag) return;
    const drawn = drag.region && !box.hidden;
    if (drawn) {
      state.region = drag.region.map((v) => Math.min(Math.max(v, 0), 1));
      $("clear-box").hidden = false;
    }
    drag = null;
    if (drawn) search();  // the box is the question: no extra button press
  }
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);
  $("clear-box").addEventListener("click", () => {
    state.region = null;
    box.hidden = true;
    $("clear-box").hidden = true;
    search();
  });

  for (const id of ["camera", "file"]) {
    $(id).addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      if (file) {
        setPhoto(file);
        search();
      }
    });
  }
  searchButton.addEventListener("click", search);
  $("look").addEventListener("change", () => { if (state.photo) search(); });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); search(); });

  async function loadSamples() {
    try {
      const response = await fetch("demo/samples");
      if (!response.ok) return;
      const samples = await response.json();
      const holder = $("samples");
      for (const s of samples) {
        const b = document.createElement("button");
        b.type = "button";
        b.title = "Try: " + s.title;
        b.dataset.sample = s.name;
        const img = document.createElement("img");
        img.src = s.url;
        img.alt = s.title;
        b.appendChild(img);
        b.addEventListener("click", async () => {
          holder.querySelectorAll("button").forEach((x) => x.classList.remove("active"));
          b.classList.add("active");
          const blob = await (await fetch(s.url)).blob();
          setPhoto(blob);
          search();
        });
        holder.appendChild(b);
      }
    } catch (e) { /* samples are optional */ }
  }
  loadSamples();
})();
