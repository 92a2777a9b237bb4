"""The web page of ``dahash serve`` (``GET /``): a self-contained page, no CDN, to drop an image on and
see its nearest indexed images, drawn from the answer of ``POST /search``.

``__MAX_UPLOAD__`` in it is replaced by the server's upload cap in bytes, so the page refuses a file
over the cap before sending it. The hits' text goes in with ``textContent``, never as HTML.
"""

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dahash image search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  #stats { color: #555; font-size: .9rem; margin: 0 0 1rem; min-height: 1.2em; }
  #layout { display: flex; gap: 1.5rem; align-items: flex-start; }
  #side { flex: 0 0 15rem; }
  #drop { display: block; box-sizing: border-box; border: 2px dashed #999; border-radius: 8px; padding: 1.5rem 1rem;
          text-align: center; cursor: pointer; background: #fafafa; }
  #drop.over { border-color: #2a6; background: #efe; }
  #query { display: block; width: 100%; max-height: 15rem; object-fit: contain; margin: .8rem 0 0;
           border: 1px solid #ddd; border-radius: 6px; background: #f4f4f4; }
  #query[hidden] { display: none; }
  #controls { margin: .8rem 0; }
  #error { color: #b00; margin: .6rem 0; white-space: pre-wrap; }
  #error:empty, #predicted:empty { display: none; }
  #predicted { font-weight: bold; margin: .6rem 0; }
  #results { flex: 1; display: flex; flex-wrap: wrap; gap: .8rem; padding: 0; margin: 0; }
  .hit { list-style: none; width: 170px; border: 1px solid #ddd; border-radius: 6px; padding: 5px;
         font-size: .85rem; }
  .hit img { width: 160px; height: 160px; object-fit: contain; background: #f4f4f4; display: block; }
  .hit .path { color: #777; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  #status { color: #666; }
  @media (max-width: 40rem) { #layout { flex-direction: column; } #side { flex: none; width: 100%; } }
</style>
</head>
<body>
<h1>dahash image search</h1>
<div id="stats"></div>
<div id="layout">
  <section id="side" aria-label="query">
    <label id="drop" for="file">Drop an image here, or click to choose one
      <input id="file" type="file" accept="image/*" hidden>
    </label>
    <img id="query" alt="the query image" hidden>
    <div id="controls">top <input id="k" type="number" min="1" max="1000" value="10" style="width:4rem"> results
      <span id="status"></span></div>
    <div id="error" role="alert"></div>
    <div id="predicted"></div>
  </section>
  <ol id="results" aria-label="nearest indexed images"></ol>
</div>
<script>
(function () {
  "use strict";
  var MAX_UPLOAD = __MAX_UPLOAD__;
  var drop = document.getElementById("drop"), input = document.getElementById("file");
  var results = document.getElementById("results"), errorBox = document.getElementById("error");
  var predicted = document.getElementById("predicted"), statusBox = document.getElementById("status");
  var query = document.getElementById("query"), last = null;

  function text(tag, cls, value) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    el.textContent = value;
    return el;
  }
  function showError(message) { errorBox.textContent = message; }
  function detail(body, status) {
    if (body && typeof body.detail === "string") { return body.detail; }
    if (body && Array.isArray(body.detail)) {
      return body.detail.map(function (d) { return d.msg || JSON.stringify(d); }).join("; ");
    }
    return "request failed (HTTP " + status + ")";
  }
  function render(data) {
    predicted.textContent = data.predicted ? "Predicted class: " + data.predicted : "";
    results.textContent = "";
    data.hits.forEach(function (hit) {
      var li = document.createElement("li");
      li.className = "hit";
      li.dataset.rank = String(hit.rank);  // not the id: JS numbers cannot hold every 63-bit id
      var img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.alt = hit.label || "";
      img.src = hit.thumbnail;  // built by the server, from the exact id
      li.appendChild(img);
      li.appendChild(text("div", "distance", "#" + hit.rank + " \\u00b7 distance " + hit.distance));
      li.appendChild(text("div", "label", "label: " + (hit.label || "\\u2013")));
      li.appendChild(text("div", "predicted", "predicted: " + (hit.predicted || "\\u2013")));
      var path = text("div", "path", hit.path || "");
      path.title = hit.path || "";
      li.appendChild(path);
      results.appendChild(li);
    });
  }
  function search(file) {
    showError("");
    if (!file) { return; }
    last = file;
    if (file.size > MAX_UPLOAD) {
      showError("the image is larger than the server's " + MAX_UPLOAD + "-byte upload cap");
      return;
    }
    query.src = URL.createObjectURL(file);
    query.hidden = false;
    var form = new FormData();
    form.append("image", file, file.name || "query");
    form.append("k", document.getElementById("k").value || "10");
    statusBox.textContent = "searching\\u2026";
    fetch("search", { method: "POST", body: form }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) { throw new Error(detail(body, response.status)); }
        return body;
      });
    }).then(function (data) {
      render(data);
      statusBox.textContent = data.hits.length + " results";
    }).catch(function (err) {
      statusBox.textContent = "";
      results.textContent = "";
      predicted.textContent = "";
      showError(err.message || String(err));
    });
  }
  input.addEventListener("change", function () { search(input.files[0]); });
  document.getElementById("k").addEventListener("change", function () { if (last) { search(last); } });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    var files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) { search(files[0]); }
  });
  fetch("stats").then(function (r) { return r.json(); }).then(function (s) {
    document.getElementById("stats").textContent = s.count + " images indexed \\u00b7 " + s.n_bits +
      "-bit codes \\u00b7 " + s.backend + " " + s.kind;
  }).catch(function () {});
}());
</script>
</body>
</html>
"""
