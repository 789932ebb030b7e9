// The reader's page: draws new CAPTCHAs, sends images to /api/read, shows the reading, keeps a tally.
"use strict";

const tally = { seen: 0, whole: 0, charactersRight: 0, characters: 0 };
const $ = (id) => document.getElementById(id);

function setStatus(message, isError) {
  $("status").textContent = message;
  $("status").classList.toggle("error", Boolean(isError));
}

function characterBox(character, detail, state) {
  const box = document.createElement("span");
  box.className = "character" + (state ? " " + state : "");
  const glyph = document.createElement("b");
  glyph.textContent = character;
  box.append(glyph);
  if (detail !== null) {
    const small = document.createElement("small");
    small.textContent = detail;
    box.append(small);
  }
  if (state) box.title = state === "right" ? "read right" : "read wrong";
  return box;
}

function showImage(url, caption) {
  const image = $("captcha-image");
  image.src = url;
  image.alt = caption;
  image.hidden = false;
  $("source-line").textContent = caption;
}

// Shows a reading; with a truth, colours each position right or wrong and counts it in the tally.
function showReading(reading, truth) {
  const read = $("read-text");
  const truthLine = $("truth-text");
  read.replaceChildren();
  truthLine.replaceChildren();
  const positions = Math.max(reading.characters.length, truth ? truth.length : 0);
  let right = 0;
  for (let index = 0; index < positions; index++) {
    const entry = reading.characters[index];
    const state = truth ? (entry && truth[index] === entry.character ? "right" : "wrong") : "";
    if (state === "right") right++;
    read.append(characterBox(entry ? entry.character : "_",
      entry ? Math.round(entry.confidence * 100) + "%" : "none", state));
    if (truth) truthLine.append(characterBox(truth[index] || "_", null, state));
  }
  if (!truth) truthLine.textContent = "unknown (uploaded image)";
  $("note").textContent = reading.note || "";
  setStatus(`Read "${reading.text}" in ${reading.milliseconds} ms by ${reading.model}.`);
  if (truth) {
    tally.seen++;
    tally.whole += right === positions ? 1 : 0;
    tally.charactersRight += right;
    tally.characters += positions;
    showTally();
  }
}

function showTally() {
  if (!tally.seen) {
    $("tally").textContent = "None read yet.";
    return;
  }
  const percent = (part, whole) => (100 * part / whole).toFixed(1) + "%";
  $("tally").textContent = `${tally.seen} read: ${tally.whole} entirely right (${percent(tally.whole, tally.seen)}), ` +
    `${tally.charactersRight} of ${tally.characters} characters right (${percent(tally.charactersRight, tally.characters)}).`;
}

async function readImage(blob) {
  const response = await fetch("/api/read", {
    method: "POST",
    headers: { "Content-Type": blob.type || "application/octet-stream" },
    body: blob,
  });
  const answer = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${answer.detail}`);
  return answer;
}

function bytesOfDataUrl(url) {
  const binary = atob(url.slice(url.indexOf(",") + 1));
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return new Blob([bytes], { type: "image/png" });
}

async function newCaptcha() {
  setStatus("Drawing a new CAPTCHA…");
  try {
    const response = await fetch("/api/captcha.json");
    const captcha = await response.json();
    if (!response.ok) throw new Error(`${response.status}: ${captcha.detail}`);
    showImage(captcha.image, `A new ${captcha.generator} CAPTCHA (seed ${captcha.seed})`);
    showReading(await readImage(bytesOfDataUrl(captcha.image)), captcha.text);
  } catch (error) {
    setStatus("Could not read a new CAPTCHA: " + error.message, true);
  }
}

async function readFile(file) {
  if (!file) return;
  showImage(URL.createObjectURL(file), `Uploaded: ${file.name || "pasted image"}`);
  setStatus("Reading…");
  try {
    showReading(await readImage(file), null);
  } catch (error) {
    $("read-text").replaceChildren();
    $("truth-text").replaceChildren();
    $("note").textContent = "";
    setStatus("Could not read this image: " + error.message, true);
  }
}

async function describeModel() {
  try {
    const model = await (await fetch("/api/model")).json();
    const size = model.input_size;
    $("model-line").textContent = `${model.file}: ${model.name}, ${model.parameters.toLocaleString()} parameters, ` +
      `${model.length} characters of "${model.alphabet}", ${size.width}x${size.height} images.`;
  } catch (error) {
    $("model-line").textContent = "Could not describe the model: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("new-captcha").addEventListener("click", newCaptcha);
  $("file-input").addEventListener("change", (event) => readFile(event.target.files[0]));
  $("reset-tally").addEventListener("click", () => {
    Object.assign(tally, { seen: 0, whole: 0, charactersRight: 0, characters: 0 });
    showTally();
  });
  const zone = $("drop-zone");
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("file-input").click();
    }
  });
  zone.addEventListener("click", () => $("file-input").click());
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    readFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = [...event.clipboardData.items].find((entry) => entry.type.startsWith("image/"));
    if (item) readFile(item.getAsFile());
  });
  describeModel();
});
