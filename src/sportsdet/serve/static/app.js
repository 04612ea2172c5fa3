// The sportsdet page: send photos (or a URL) to /v1/predict and show each answer.
// Plain JavaScript, no library and nothing from another site: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
let maxImages = 16;
let maxBytes = 32 * 1024 * 1024;
let abstainSetBy = "model";  // whose abstain rule is in force (/v1/model): the cards say which

function apiHeaders() {
  const key = $("key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text) { $("status").textContent = text; }

// The server's error of a failed response: { message, code } (the code is shown once, by the card).
async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error) return { message: body.error.message, code: body.error.code };
  } catch (_) { /* not JSON */ }
  return { message: `HTTP ${response.status}`, code: `http_${response.status}` };
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/model", { headers: apiHeaders() });
  } catch (error) {  // the server is down or unreachable: said, not "Loading the model..." forever
    $("model-line").textContent = `Cannot reach the server (${error.message}); reload the page to try again.`;
    return;
  }
  if (response.status === 401) {
    $("model-line").textContent = "This server needs an API key: enter it below.";
    $("key-box").open = true;
    return;
  }
  if (!response.ok) {
    const error = await apiError(response);
    $("model-line").textContent = `${error.message} (${error.code})`;
    return;
  }
  const model = await response.json();
  abstainSetBy = model.abstain_set_by;
  maxImages = model.limits.max_images;
  maxBytes = model.limits.max_request_bytes;
  $("model-line").textContent = `Model ${model.id}: ${model.num_classes} sports.`;
  $("url-note").hidden = model.limits.urls;
  // A server that fetches no URLs: the form is off, not a 403 after each try.
  for (const control of $("url-form").querySelectorAll("input, button")) control.disabled = !model.limits.urls;
}

function pct(score) { return `${(score * 100).toFixed(1)}%`; }

// One answer as a sentence for the status line, which a screen reader reads out: the sport itself,
// not only "Labelled 1 photo(s)." (the card with the label is elsewhere on the page).
function said(result) {
  if (result.error) return `${result.input}: could not be labelled (${result.error.message}).`;
  if (result.label) return `${result.input}: ${result.label}, ${pct(result.score)}.`;
  const best = result.top_k[0];
  return `${result.input}: not sure; best guess ${best.label}, ${pct(best.score)}.`;
}

function card(result, thumbnail) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.input = result.input;
  if (thumbnail) {
    const img = document.createElement("img");
    img.src = thumbnail;
    img.alt = result.label ? `Photo ${result.input}, labelled ${result.label}` : `Photo ${result.input}`;
    // A browser that cannot show the photo's format (HEIC outside Safari) loses the preview only.
    img.addEventListener("error", () => img.remove());
    item.append(img);
  }
  const heading = document.createElement("h3");
  const name = document.createElement("p");
  name.className = "name";
  name.textContent = result.input;
  if (result.error) {
    heading.textContent = "Could not label";
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = `${result.error.message} (${result.error.code})`;
    item.append(heading, name, error);
    return item;
  }
  heading.className = "label";
  const best = result.top_k[0];
  heading.textContent = result.label
    ? `${result.label} - ${pct(result.score)}`
    : `Not sure - best guess: ${best.label} ${pct(best.score)}`;
  const abstain = document.createElement("p");
  abstain.className = "abstain";
  const minimum = abstainSetBy === "--min-score";
  if (result.uncertain === true) {
    abstain.classList.add("unsure");
    abstain.textContent = minimum
      ? "Not sure: its score is under this server's minimum (--min-score)."
      : "Not sure: the model's abstain rule says it cannot tell this photo.";
  } else if (result.uncertain === false) {
    abstain.textContent = minimum
      ? "Confident: its score clears this server's minimum (--min-score)."
      : "Confident: the model's abstain rule lets it answer.";
  } else {
    abstain.textContent = abstainSetBy === "--no-abstain"
      ? "This server labels every photo (--no-abstain)."
      : "This model has no abstain rule.";
  }
  const bars = document.createElement("ol");
  bars.className = "bars";
  bars.setAttribute("aria-label", `Top ${result.top_k.length} sports`);
  for (const entry of result.top_k) {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = entry.label;
    label.title = entry.label;
    const track = document.createElement("span");
    track.className = "track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    track.setAttribute("aria-valuenow", (entry.score * 100).toFixed(1));
    track.setAttribute("aria-label", `${entry.label}: ${pct(entry.score)}`);
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = pct(entry.score);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = pct(entry.score);
    row.append(label, track, value);
    bars.append(row);
  }
  item.append(heading, name, abstain, bars);
  if (result.warning) {
    const warning = document.createElement("p");
    warning.className = "warning";
    warning.textContent = `Trust this less: ${result.warning}`;
    item.append(warning);
  }
  return item;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One request; a busy server (429) is asked again after its Retry-After, a few times.
async function send(body, headers) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch("/v1/predict?top_k=5", { method: "POST", body, headers: { ...apiHeaders(), ...headers } });
    if (response.ok) return response.json();
    if (response.status === 429 && attempt < 3) {
      const wait = Number(response.headers.get("Retry-After")) || 1;
      setStatus(`The server is busy; trying again in ${wait} s...`);
      await sleep(wait * 1000);
      continue;
    }
    const said = await apiError(response);
    const error = new Error(said.message);
    error.code = said.code;
    throw error;
  }
}

function errorCard(name, code, message) {
  return card({ input: name, error: { code, message } }, null);
}

// Requests of at most maxImages photos and maxBytes bytes: 16 phone photos of 2-3 MB each were
// one 413 for all of them.
function* batches(files) {
  const overhead = 1024;  // multipart headers of one part, generously
  let chunk = [], bytes = 0;
  for (const file of files) {
    if (file.size + overhead > maxBytes) { yield { tooBig: true, file }; continue; }
    if (chunk.length && (chunk.length >= maxImages || bytes + file.size + overhead > maxBytes)) {
      yield chunk;
      chunk = []; bytes = 0;
    }
    chunk.push(file);
    bytes += file.size + overhead;
  }
  if (chunk.length) yield chunk;
}

async function labelFiles(fileList) {
  const all = Array.from(fileList);
  // This drop's cards go above the earlier ones, in the order the files were chosen (each card
  // put first had listed a drop last file first).
  const before = $("results").firstChild;
  const add = (item) => $("results").insertBefore(item, before);
  const empty = all.filter((f) => f.size === 0);
  for (const file of empty) {  // said on a card, not dropped in silence
    add(errorCard(file.name, "bad_image", "the file is empty (0 bytes)"));
  }
  const files = all.filter((f) => f.size > 0);
  // Each request stands alone: one that fails gets an error card per photo, the rest go on. A photo
  // the server could not read is a failure too (it answers 200 with an error for that photo).
  let done = 0, unsure = 0, failed = empty.length, lastError = empty.length ? "the file is empty (0 bytes)" : "";
  let only = null;  // the answer, when one photo was sent: said in full
  const finish = () => {
    if (all.length === 1 && only) { setStatus(said(only)); return; }
    const uncertain = unsure ? `, ${unsure} of them uncertain` : "";
    setStatus(failed ? `Labelled ${done} of ${all.length} photo(s)${uncertain}; ${failed} could not be labelled${lastError ? ` (last: ${lastError})` : ""}.`
      : `Labelled ${done} photo(s)${uncertain}.`);
  };
  if (!files.length) { finish(); return; }
  setStatus(`Labelling ${files.length} photo(s)...`);
  for (const chunk of batches(files)) {
    if (chunk.tooBig) {  // alone above the server's request limit: said on its card, the rest go on
      const size = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`);
      const message = `${size(chunk.file.size)}, above this server's ${size(maxBytes)} request limit`;
      add(errorCard(chunk.file.name, "payload_too_large", message));
      failed += 1;
      lastError = message;
      continue;
    }
    const form = new FormData();
    for (const file of chunk) form.append("files", file, file.name);
    try {
      const answer = await send(form, {});
      answer.results.forEach((result, i) => {
        add(card(result, URL.createObjectURL(chunk[i])));
        only = result;
        if (result.error) { failed += 1; lastError = result.error.message; }
        else { done += 1; if (result.uncertain) unsure += 1; }
      });
    } catch (error) {
      for (const file of chunk) add(errorCard(file.name, error.code || "failed", error.message));
      failed += chunk.length;
      lastError = error.message;
    }
    setStatus(`Labelling: ${done + failed - empty.length} of ${files.length} photo(s) sent...`);
  }
  finish();
}

async function labelUrl(url) {
  setStatus("Fetching and labelling the URL...");
  try {
    const answer = await send(JSON.stringify({ urls: [url] }), { "Content-Type": "application/json" });
    const result = answer.results[0];
    $("results").prepend(card(result, result.error ? null : url));
    setStatus(said(result));
  } catch (error) {
    setStatus(`Could not label: ${error.message}`);
  }
}

function init() {
  const drop = $("drop");
  const input = $("files");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    labelFiles(event.dataTransfer.files);
  });
  // A photo dropped anywhere else must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  input.addEventListener("change", () => { labelFiles(input.files); input.value = ""; });
  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const url = $("url").value.trim();
    if (url) labelUrl(url);
  });
  const key = $("key");
  key.value = sessionStorage.getItem("sportsdet-key") || "";
  key.addEventListener("change", () => { sessionStorage.setItem("sportsdet-key", key.value); loadModel(); });
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);
