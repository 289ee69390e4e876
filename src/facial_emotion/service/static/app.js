// facial-emotion page: a Photo tab (upload -> boxes, labels and bars on a canvas) and a Live tab
// (camera frames as JPEG over a WebSocket -> boxes over the video, fps, a one-minute chart).
// Hand-written, no libraries: the page must work offline and load nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);

// Filled from GET /v1/model so names and colours have one definition (the server's).
const model = { classes: [], names: {}, colors: {}, maxUpload: 10 * 1024 * 1024, feedback: false };
const name = (e) => model.names[e] || e;
const color = (e) => model.colors[e] || "#aaaaaa";
const pct = (p) => `${Math.round(p * 100)}%`;
// A size for people to one decimal, "10 MB", "0.4 MB", "10.5 MB" (a small --max-upload-mb showed as "0 MB").
const megabytes = (bytes) => `${(bytes / 1048576).toFixed(1).replace(/\.0$/, "")} MB`;

async function loadModel() {
  try {
    const r = await fetch("/v1/model");
    const card = await r.json();
    if (!r.ok) throw new Error(card.error || r.statusText);
    model.classes = card.classes;
    model.names = card.display_names;
    model.colors = card.colors;
    model.maxUpload = card.limits.max_upload_bytes;
    const acc = card.val_accuracy == null ? "" : ` · ${(card.val_accuracy * 100).toFixed(1)}% validation accuracy`;
    $("model-info").textContent = `Model ${card.arch || card.name}${acc} · detector ${card.detector}`;
    $("version").textContent = `facial-emotion ${card.version}`;
    const tuned = card.finetune ? ` (fine-tuned on ${card.finetune.corrections} corrections)` : "";
    $("active-model").textContent = `model ${card.name}${tuned}`;
    model.feedback = Boolean(card.feedback && card.feedback.enabled);
    $("feedback-note").hidden = !model.feedback;
    if (model.feedback) {
      $("feedback-note").textContent = `Corrections ("wrong?") save the face crops on this server in ${card.feedback.dir}.`;
    }
    $("max-size").textContent = megabytes(card.limits.max_upload_bytes);
    $("legend").replaceChildren(...model.classes.map((c) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="swatch"></span>`;
      li.firstChild.style.background = color(c);
      li.append(name(c));
      return li;
    }));
  } catch (err) {
    $("model-info").textContent = `Cannot load the model card: ${err.message}`;
  }
}

// --- tabs (WAI-ARIA tabs pattern: arrow keys move between tabs) ----------------------------------

const tabs = [$("tab-photo"), $("tab-live")];

function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (tab.id !== "tab-live") stopLive(); // do not keep the camera on behind the user's back
}

for (const t of tabs) {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (ev) => {
    const i = tabs.indexOf(t);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
    if (next === undefined) return;
    ev.preventDefault();
    const target = tabs[(next + tabs.length) % tabs.length];
    selectTab(target);
    target.focus();
  });
}

// --- drawing helpers shared by both tabs ----------------------------------------------------------

function drawLabel(ctx, text, x, y, fill, size) {
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const w = ctx.measureText(text).width + size * 0.6;
  const h = size * 1.4;
  const top = y - h >= 0 ? y - h : y; // above the box, or inside it at the top edge
  x = Math.max(0, Math.min(x, ctx.canvas.width - w)); // whole, even for a face at the right edge
  ctx.fillStyle = fill;
  ctx.fillRect(x, top, w, h);
  ctx.fillStyle = "#111";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + size * 0.3, top + h / 2);
}

// The face mesh (?landmarks=true): one light dot per point, outlined in the emotion's colour.
function drawMesh(ctx, face, k, c) {
  const r = Math.max(1.5, (face.box[2] * k) / 110);
  ctx.fillStyle = c;
  for (const [px, py] of face.landmarks) ctx.fillRect(px * k - r / 2, py * k - r / 2, r, r);
  ctx.fillStyle = "rgba(255,255,255,0.9)";
  const q = r / 2;
  for (const [px, py] of face.landmarks) ctx.fillRect(px * k - q / 2, py * k - q / 2, q, q);
}

function poseText(pose) {
  return `yaw ${pose.yaw.toFixed(0)}°, pitch ${pose.pitch.toFixed(0)}°, roll ${pose.roll.toFixed(0)}°`;
}

// "Happy 82%", or for a face the calibrated model is unsure of (top label right less than half of
// the time at that confidence): "uncertain: sad / neutral".
function faceLabel(face) {
  return face.uncertain
    ? `uncertain: ${name(face.emotion).toLowerCase()} / ${name(face.runner_up).toLowerCase()}`
    : `${name(face.emotion)} ${pct(face.confidence)}`;
}

// Every face's box (and probability bars), then every label on top: a face's bars never hide a
// label. Text is sized by the canvas's shorter side too, so a very wide photo's bars fit in it.
function drawFaces(ctx, faces, k, bars) {
  const { width, height } = ctx.canvas;
  const size = Math.max(12, Math.min(28, Math.min(width, 2 * height) / 50));
  for (const face of faces) drawFaceBox(ctx, face, k, bars, size);
  for (const face of faces) {
    const [x, y] = face.box.map((v) => v * k);
    const id = face.track_id != null ? `#${face.track_id} ` : "";
    drawLabel(ctx, `${id}${faceLabel(face)}`, x, y, color(face.emotion), size);
  }
}

function drawFaceBox(ctx, face, k, bars, size) {
  const [x, y, w, h] = face.box.map((v) => v * k);
  const c = color(face.emotion);
  if (face.landmarks) drawMesh(ctx, face, k, c);
  ctx.lineWidth = Math.max(2, size / 6);
  ctx.strokeStyle = c;
  ctx.strokeRect(x, y, w, h);
  if (!bars) return;
  // Probability bars beside the box (right if there is room, else left), below its label's row.
  const bw = size * 7, row = size * 1.1;
  const bx = x + w + bw + 8 < ctx.canvas.width ? x + w + 6 : Math.max(0, x - bw - 6);
  const sorted = Object.entries(face.scores).sort((a, b) => b[1] - a[1]);
  const top = y - size * 1.4 >= 0 ? y : y + size * 1.4; // below the label where it sits inside the box
  ctx.font = `${size * 0.75}px system-ui, sans-serif`;
  sorted.forEach(([e, p], i) => {
    const by = Math.min(top + i * row, ctx.canvas.height - (sorted.length - i) * row);
    ctx.fillStyle = "rgba(20,20,20,0.75)";
    ctx.fillRect(bx, by, bw, row - 2);
    ctx.fillStyle = color(e);
    ctx.fillRect(bx, by, bw * p, row - 2);
    ctx.fillStyle = "#fff";
    ctx.textBaseline = "middle";
    ctx.fillText(`${name(e)} ${pct(p)}`, bx + 4, by + (row - 2) / 2);
  });
}

function barsList(scores) {
  const ul = document.createElement("ul");
  ul.className = "bars";
  for (const [e, p] of Object.entries(scores).sort((a, b) => b[1] - a[1])) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="bar-name"></span><span class="bar" aria-hidden="true"><span></span></span><span class="bar-value"></span>`;
    li.children[0].textContent = name(e);
    li.children[1].firstChild.style.width = pct(p);
    li.children[1].firstChild.style.background = color(e);
    li.children[2].textContent = pct(p);
    ul.append(li);
  }
  return ul;
}

// --- Photo tab ------------------------------------------------------------------------------------

const MAX_CANVAS_SIDE = 1600; // enough for the screen; keeps big photos from using 100s of MB

function photoStatus(text, isError = false) {
  $("photo-status").textContent = text;
  $("photo-status").classList.toggle("error", isError);
}

let lastPhoto = null; // the photo on screen (its "wrong?" forms send it)
let pickedPhoto = null; // the photo last picked: analysed again when the mesh checkbox changes
let photoRequest = 0; // the latest upload's number: a slower earlier reply must not replace its result

// The server's reply, or an Error whose message a person can act on (not "Failed to fetch" or a JSON
// parser's complaint about a proxy's HTML page).
async function postPhoto(file, query) {
  const body = new FormData();
  body.append("file", file, file.name);
  let r;
  try {
    r = await fetch(`/v1/analyze?${query}`, { method: "POST", body });
  } catch {
    throw new Error("the server did not answer (is it still running?)");
  }
  let reply = null;
  try { reply = await r.json(); } catch { reply = null; }
  if (r.ok && reply) return reply;
  const said = reply?.error;
  if (!said) throw new Error(`the server answered ${r.status} ${r.statusText}`.trim());
  throw new Error(said.startsWith(`${file.name}: `) ? said.slice(file.name.length + 2) : said);
}

async function analyzePhoto(file) {
  if (!file) return;
  const ticket = ++photoRequest;
  pickedPhoto = file;
  if (file.size > model.maxUpload) {
    pickedPhoto = null; // the mesh checkbox must not send it
    photoStatus(`${file.name} is too large (${megabytes(file.size)}; limit ${megabytes(model.maxUpload)}).`, true);
    $("photo-result").hidden = true; // the previous photo's faces (and its "wrong?" forms) go with it
    return;
  }
  photoStatus(`Analysing ${file.name}…`);
  // Browsers cannot show every format the server reads (TIFF...): then ask the server to draw.
  let bitmap = null;
  try { bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }); } catch { bitmap = null; }
  let result;
  try {
    const query = new URLSearchParams();
    if (!bitmap) query.set("annotate", "true");
    if ($("mesh").checked) query.set("landmarks", "true");
    result = await postPhoto(file, query);
  } catch (err) {
    if (ticket !== photoRequest) return;
    photoStatus(`Could not analyse ${file.name}: ${err.message}`, true);
    $("photo-result").hidden = true;
    pickedPhoto = null; // the mesh checkbox must not send it again
    return;
  }
  if (ticket !== photoRequest) return; // another photo was picked meanwhile: its result is the one to show
  // The browser did not turn the picture upright as the server did (EXIF in some formats): let the
  // server draw it, rather than boxes on the wrong part of a sideways picture.
  const sideways = bitmap && (bitmap.width > bitmap.height) !== (result.width > result.height);
  // A turn that keeps the sides (upside down, mirrored) cannot be seen from the size: browsers apply
  // a JPEG's EXIF orientation, not always another format's, so those are drawn by the server too.
  const turnedElsewhere = (result.orientation || 1) !== 1 && file.type !== "image/jpeg";
  const drawBoxes = bitmap !== null && !sideways && !turnedElsewhere;
  if (!drawBoxes) {
    if (!result.annotated_jpeg_base64) {
      const query = new URLSearchParams({ annotate: "true" });
      if ($("mesh").checked) query.set("landmarks", "true");
      try { result = await postPhoto(file, query); } catch (err) {
        if (ticket !== photoRequest) return;
        photoStatus(`Could not analyse ${file.name}: ${err.message}`, true);
        $("photo-result").hidden = true;
        pickedPhoto = null;
        return;
      }
      if (ticket !== photoRequest) return;
    }
    const jpeg = Uint8Array.from(atob(result.annotated_jpeg_base64), (ch) => ch.charCodeAt(0));
    bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    if (ticket !== photoRequest) return;
  }
  lastPhoto = file;
  showPhoto(bitmap, result, drawBoxes);
  const n = result.faces.length;
  photoStatus(n ? `${n} face${n === 1 ? "" : "s"} found in ${file.name}.` : `No face found in ${file.name}.`);
}

function showPhoto(bitmap, result, drawBoxes) {
  const canvas = $("photo-canvas");
  const scale = Math.min(1, MAX_CANVAS_SIDE / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const k = canvas.width / result.width; // boxes are in the server's (EXIF-upright) pixels
  if (drawBoxes) drawFaces(ctx, result.faces, k, result.faces.length <= 6);

  const faces = result.faces;
  $("face-count").textContent = String(faces.length);
  $("face-word").textContent = faces.length === 1 ? "face" : "faces";
  $("face-list").replaceChildren(...faces.map((f, i) => {
    const li = document.createElement("li");
    li.dataset.testid = "face-item";
    li.dataset.emotion = f.emotion;
    li.innerHTML = `<p class="face-title"><span class="swatch"></span><strong></strong></p>`;
    li.querySelector(".swatch").style.background = color(f.emotion);
    li.querySelector("strong").textContent = `Face ${i + 1}: ${faceLabel(f)}`;
    li.dataset.uncertain = String(Boolean(f.uncertain));
    if (f.pose) {
      const pose = document.createElement("p");
      pose.className = "small muted";
      pose.dataset.testid = "face-pose";
      pose.textContent = `Head: ${poseText(f.pose)}`;
      li.append(pose);
    }
    li.append(barsList(f.scores));
    if (model.feedback) li.append(wrongControl(lastPhoto, i + 1, f.emotion));
    return li;
  }));
  canvas.setAttribute("aria-label", faces.length
    ? `Photo with ${faces.length} face${faces.length === 1 ? "" : "s"}: ${faces.map((f) => faceLabel(f)).join(", ")}`
    : "Photo with no face found");
  $("photo-result").hidden = false;
}

// "wrong?" (Photo tab and a paused Live frame): pick the right emotion; the image goes back with the
// face's number (as /v1/analyze listed it) and the server saves that face's crops into its feedback
// folder. A Live frame's faces come from the tracker, whose boxes and order can differ from a fresh
// detection's, so their `box` goes too and the server takes the face it finds overlapping it most.
function wrongControl(file, number, predicted, box = null) {
  const form = document.createElement("form");
  form.className = "wrong small";
  form.dataset.testid = "wrong-form";
  form.innerHTML = `<label>Wrong? It is <select data-testid="wrong-emotion"></select></label>
    <button type="submit" data-testid="wrong-send">Save correction</button> <output data-testid="wrong-status"></output>`;
  const select = form.querySelector("select");
  select.append(...model.classes.filter((c) => c !== predicted).map((c) => new Option(name(c), c)));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = form.querySelector("output");
    const body = new FormData();
    body.append("file", file, file.name);
    const query = new URLSearchParams({ face: String(number), emotion: select.value });
    if (box) query.set("box", box.join(","));
    try {
      const r = await fetch(`/v1/feedback?${query}`, { method: "POST", body });
      const reply = await r.json();
      if (!r.ok) throw new Error(reply.error || `${r.status} ${r.statusText}`);
      out.textContent = `Saved as ${name(reply.emotion)}.`;
      form.dataset.saved = reply.emotion;
    } catch (err) {
      out.textContent = `Not saved: ${err.message}`;
    }
  });
  return form;
}

const drop = $("drop");
$("pick").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (ev) => { analyzePhoto(ev.target.files[0]); ev.target.value = ""; });
$("mesh").addEventListener("change", () => { if (pickedPhoto) analyzePhoto(pickedPhoto); });
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  analyzePhoto(ev.dataTransfer.files[0]);
});
document.addEventListener("paste", (ev) => { // a screenshot pasted anywhere on the Photo tab
  const file = [...(ev.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file && !$("panel-photo").hidden) analyzePhoto(file);
});

// --- Live tab -------------------------------------------------------------------------------------

const FRAME_WIDTH = 640;   // frames are downscaled before sending: faster upload and detection
// One frame at a time: the next is grabbed when the answer comes, so boxes lag by one analysis only.
// (A client that sends faster loses nothing either: the server skips to the newest frame.)
const MAX_IN_FLIGHT = 1;
const HISTORY_MS = 60_000;

const live = {
  running: false, starting: false, startAttempt: 0, stream: null, ws: null, inFlight: 0, lastReply: 0, retry: 0, sent: 0, sentAt: new Map(),
  result: null, resultJpeg: null, resultAt: 0, replies: [], history: [], chartDrawn: 0,
  paused: false, frozen: null, // Pause: no frames sent; the last analysed frame and its faces stay
  summaryWanted: false, moodTimer: 0, moods: null, downloads: [],
  grab: document.createElement("canvas"),
};

function liveStatus(text, isError = false) {
  $("live-status").textContent = text;
  $("live-status").classList.toggle("error", isError);
}

async function startLive() {
  if (live.starting || live.running) return; // a double click: one camera, one socket
  const attempt = ++live.startAttempt; // Stop, or a later Start, makes this one stale
  if (!navigator.mediaDevices?.getUserMedia) {
    liveStatus("This browser gives no camera access here (it needs https or localhost).", true);
    return;
  }
  live.starting = true; // Stop may be pressed while the browser asks for the camera
  $("live-toggle").textContent = "Stop camera";
  liveStatus("Starting the camera…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
    });
  } catch (err) {
    if (attempt !== live.startAttempt) return; // stopped meanwhile: nothing to report
    live.starting = false;
    $("live-toggle").textContent = "Start camera";
    const why = err.name === "NotAllowedError" ? "permission was denied" : err.message;
    liveStatus(`Cannot open the camera: ${why}.`, true);
    return;
  }
  const video = $("video");
  video.onloadedmetadata = () => { // fit the stage to the camera's shape: no black bands
    if (video.videoWidth) $("stage").style.aspectRatio = `${video.videoWidth} / ${video.videoHeight}`;
  };
  if (attempt === live.startAttempt) {
    live.stream = stream;
    video.srcObject = stream;
    await video.play().catch(() => {});
  }
  if (attempt !== live.startAttempt) { // Stop was pressed while the camera opened: close it again
    stream.getTracks().forEach((t) => t.stop());
    if (video.srcObject === stream) video.srcObject = null;
    if (live.stream === stream) live.stream = null;
    return;
  }
  live.starting = false;
  live.history = []; // a new session: the chart, speed and mood start afresh
  live.replies = [];
  $("latency").textContent = "–";
  $("mood-name").textContent = "no face yet";
  $("mood-list").replaceChildren();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  live.ws = new WebSocket(`${proto}://${location.host}/v1/stream?smooth=0.4`);
  live.ws.onopen = () => { liveStatus("Live: analysing the camera."); pump(); askMood(); };
  live.ws.onmessage = onReply;
  live.ws.onclose = (ev) => { if (live.running && ev.target === live.ws) { liveStatus(`Connection closed (${ev.code}). Press Start to retry.`, true); stopLive(false); } };
  live.running = true;
  $("live-pause").hidden = false;
  $("session").hidden = true;
  live.inFlight = 0;
  live.sent = 0;
  live.sentAt.clear();
  live.lastReply = performance.now();
  $("live-toggle").textContent = "Stop camera";
  requestAnimationFrame(drawLive);
}

function stopLive(resetStatus = true) {
  if (live.starting) { // the camera is still opening: startLive closes it when it comes
    live.starting = false;
    live.startAttempt += 1;
    $("live-toggle").textContent = "Start camera";
    if (resetStatus) liveStatus("Camera off.");
    return;
  }
  if (!live.running && !live.stream) return;
  live.running = false;
  const ws = live.ws;
  live.ws = null;
  if (ws?.readyState === WebSocket.OPEN) { // the server keeps the session: ask for its summary, then close
    live.summaryWanted = true;
    ws.send(JSON.stringify({ type: "summary" }));
    setTimeout(() => ws.close(), 5000);
  } else {
    ws?.close();
  }
  live.stream?.getTracks().forEach((t) => t.stop());
  live.stream = null;
  $("video").srcObject = null;
  live.result = null;
  live.resultJpeg = null;
  live.paused = false;
  live.frozen = null;
  $("live-pause").hidden = true;
  $("live-pause").textContent = "Pause";
  $("live-toggle").textContent = "Start camera";
  $("live-faces").replaceChildren();
  $("fps").textContent = "–";
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  if (resetStatus) liveStatus("Camera off.");
}

function pump() {
  if (!live.running || live.paused || !live.ws || live.ws.readyState !== WebSocket.OPEN || document.hidden) return;
  if (performance.now() - live.lastReply > 5000) live.inFlight = 0; // a lost reply must not stall us
  while (live.inFlight < MAX_IN_FLIGHT) {
    if (!sendFrame()) { // video not ready yet: try again soon (one timer at a time)
      live.retry ||= setTimeout(() => { live.retry = 0; pump(); }, 100);
      return;
    }
  }
}

function sendFrame() {
  const video = $("video");
  if (!video.videoWidth) return false;
  const w = Math.min(FRAME_WIDTH, video.videoWidth);
  const h = Math.round((video.videoHeight * w) / video.videoWidth);
  const grab = live.grab;
  grab.width = w;
  grab.height = h;
  grab.getContext("2d").drawImage(video, 0, 0, w, h);
  live.inFlight++;
  grab.toBlob((blob) => {
    if (blob && live.ws && live.ws.readyState === WebSocket.OPEN) {
      live.ws.send(blob);
      // The server numbers frames in the same order; the JPEG is kept for a correction after Pause.
      live.sentAt.set(++live.sent, { at: performance.now(), jpeg: blob });
    } else {
      live.inFlight = Math.max(0, live.inFlight - 1);
    }
  }, "image/jpeg", 0.8);
  return true;
}

function onReply(ev) {
  const now = performance.now();
  const msg = JSON.parse(ev.data);
  if (msg.type === "summary") {
    if (ev.target === live.ws) showMood(msg.mood); // not a stopped session's, into a new one
    if (live.summaryWanted && ev.target !== live.ws) { live.summaryWanted = false; showSession(msg); ev.target.close(); }
    return;
  }
  if (!live.running || ev.target !== live.ws) return; // replies still on their way after Stop
  if (msg.type === "event") return; // emotion changes: the summary's timeline shows them
  // The server answers only the newest frame; the ones it skipped get no reply of their own.
  live.inFlight = Math.max(0, live.inFlight - 1 - (msg.dropped || 0));
  live.lastReply = now;
  if (live.paused) return; // the frozen frame stays; a reply still on its way is not shown
  if (msg.type === "result") {
    // A result after a server error (a timed-out frame under load) says the stream is back.
    if ($("live-status").classList.contains("error")) liveStatus("Live: analysing the camera.");
    live.result = msg;
    live.resultJpeg = live.sentAt.get(msg.frame)?.jpeg || null; // what a correction sends back
    live.resultAt = now;
    live.replies.push(now);
    while (live.replies[0] < now - 2000) live.replies.shift();
    $("fps").textContent = `${(live.replies.length / 2).toFixed(1)} fps`;
    const sent = live.sentAt.get(msg.frame);
    if (sent !== undefined) $("latency").textContent = `${Math.round(now - sent.at)} ms`; // round trip
    for (const k of live.sentAt.keys()) if (k <= msg.frame) live.sentAt.delete(k);
    $("dropped").textContent = String(msg.dropped_total);
    showLiveFaces(msg.faces);
    record(now, msg.faces);
  } else if (msg.error) {
    liveStatus(`Server: ${msg.error}`, true);
  }
  pump();
}

// `frame`: the paused frame's JPEG, for the "wrong?" controls (with a feedback folder only).
function showLiveFaces(faces, frame = null) {
  $("live-faces").replaceChildren(...faces.map((f, i) => {
    const li = document.createElement("li");
    li.dataset.testid = "live-face";
    li.dataset.emotion = f.emotion;
    li.innerHTML = `<span class="swatch"></span>`;
    li.firstChild.style.background = color(f.emotion);
    li.append(`${f.track_id != null ? `#${f.track_id} ` : ""}${faceLabel(f)}`);
    if (frame && model.feedback) li.append(wrongControl(frame, i + 1, f.emotion, f.box));
    return li;
  }));
  if (!faces.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No face in view.";
    $("live-faces").append(li);
  }
}

// Overlay: redrawn every animation frame so boxes follow the video's displayed size.
function drawLive() {
  if (!live.running) return;
  const overlay = $("overlay");
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(overlay.clientWidth * dpr), h = Math.round(overlay.clientHeight * dpr);
  if (overlay.width !== w || overlay.height !== h) { overlay.width = w; overlay.height = h; }
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const r = live.paused ? live.frozen?.result : live.result;
  if (r && (live.paused || performance.now() - live.resultAt < 1500)) { // stale boxes would point at nobody
    // The video is letterboxed (object-fit: contain) when the camera's shape differs from the stage's.
    const k = Math.min(w / r.width, h / r.height);
    ctx.save();
    ctx.translate((w - r.width * k) / 2, (h - r.height * k) / 2);
    if (live.paused) ctx.drawImage(live.frozen.bitmap, 0, 0, r.width * k, r.height * k); // the analysed frame
    drawFaces(ctx, r.faces, k, false);
    ctx.restore();
  }
  if (performance.now() - live.chartDrawn > 250) { drawChart(); live.chartDrawn = performance.now(); }
  if (live.inFlight === 0 || performance.now() - live.lastReply > 5000) pump(); // restart an idle pipeline
  requestAnimationFrame(drawLive);
}

// Pause: stop sending frames and keep the last analysed frame (the JPEG that was sent) with its faces,
// each with "wrong?" when the server keeps corrections; Resume goes on streaming.
async function pauseLive() {
  if (!live.running || live.paused) return;
  live.paused = true;
  $("live-pause").textContent = "Resume";
  $("video").pause();
  record(performance.now(), []); // a gap in the chart, not a line across the pause
  const result = live.result, jpeg = live.resultJpeg;
  const frame = result && jpeg ? new File([jpeg], `live-frame-${result.frame}.jpg`, { type: "image/jpeg" }) : null;
  const bitmap = frame ? await createImageBitmap(frame) : null;
  if (!live.paused) return; // resumed meanwhile
  live.frozen = bitmap ? { result, bitmap } : null;
  showLiveFaces(live.frozen ? result.faces : [], frame);
  liveStatus(live.frozen && model.feedback && result.faces.length
    ? 'Paused on the last analysed frame: "wrong?" saves a correction. Resume to go on.'
    : "Paused on the last analysed frame. Resume to go on.");
}

function resumeLive() {
  if (!live.running || !live.paused) return;
  live.paused = false;
  live.frozen = null;
  $("live-pause").textContent = "Pause";
  $("video").play().catch(() => {});
  showLiveFaces(live.result ? live.result.faces : []);
  liveStatus("Live: analysing the camera.");
  pump();
}

// --- the one-minute chart: the biggest face's probabilities over time ---------------------------

function record(now, faces) {
  const main = faces.reduce((a, f) => (!a || f.box[2] * f.box[3] > a.box[2] * a.box[3] ? f : a), null);
  live.history.push({ t: now, scores: main ? main.scores : null });
  while (live.history.length && live.history[0].t < now - HISTORY_MS) live.history.shift();
}

function drawChart() {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "rgba(128,128,128,0.35)";
  ctx.lineWidth = 1;
  ctx.fillStyle = getComputedStyle(canvas).color;
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  for (const level of [0, 0.5, 1]) {
    const y = h - level * (h - 4) - 2;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.textBaseline = level === 1 ? "top" : "bottom";
    ctx.fillText(`${level * 100}%`, 4, level === 1 ? y + 2 : y - 2);
  }
  const now = performance.now();
  const x = (t) => w - ((now - t) / HISTORY_MS) * w;
  ctx.lineWidth = 2 * dpr;
  for (const c of model.classes) {
    ctx.strokeStyle = color(c);
    ctx.beginPath();
    let pen = false;
    for (const p of live.history) {
      if (!p.scores) { pen = false; continue; } // a gap where no face was seen
      const y = h - p.scores[c] * (h - 4) - 2;
      if (pen) ctx.lineTo(x(p.t), y); else ctx.moveTo(x(p.t), y);
      pen = true;
    }
    ctx.stroke();
  }
}

// --- the session summary (sent by the server when the camera stops) and the mood panel ----------

function showSession(msg) {
  const people = [...msg.people].sort((a, b) => b.seconds - a.seconds).slice(0, 8);
  const n = msg.people.length;
  $("session-info").textContent = n
    ? `${n} ${n === 1 ? "person" : "people"} seen${n > people.length ? ` (the ${people.length} seen longest shown)` : ""}, ${msg.events.length} event${msg.events.length === 1 ? "" : "s"}.`
    : "No face was seen.";
  $("session-people").replaceChildren(...people.map((p) => {
    const li = document.createElement("li");
    li.dataset.testid = "session-person";
    li.dataset.emotion = p.dominant_emotion || "";
    const title = document.createElement("strong");
    const changes = `${p.changes} change${p.changes === 1 ? "" : "s"}`;
    const mostly = p.dominant_emotion ? `mostly ${name(p.dominant_emotion)} (${pct(p.share[p.dominant_emotion])})` : "seen too briefly";
    title.textContent = `#${p.track_id}: ${p.seconds.toFixed(1)} s, ${mostly}, ${changes}`;
    const strip = document.createElement("div");
    strip.className = "strip";
    strip.setAttribute("role", "img");
    const start = p.first_s, span = Math.max(1e-6, p.timeline.length ? p.timeline.at(-1).end_s - start : 1);
    strip.setAttribute("aria-label", `Timeline: ${p.timeline.map((s) => `${name(s.emotion)} ${s.start_s.toFixed(1)}–${s.end_s.toFixed(1)} s`).join(", ")}`);
    strip.append(...p.timeline.map((s) => {
      const seg = document.createElement("span");
      seg.style.left = `${((s.start_s - start) / span) * 100}%`;
      seg.style.width = `${((s.end_s - s.start_s) / span) * 100}%`;
      seg.style.background = color(s.emotion);
      seg.title = `${name(s.emotion)} ${s.start_s.toFixed(1)}–${s.end_s.toFixed(1)} s`;
      return seg;
    }));
    const shares = Object.fromEntries(Object.entries(p.share).filter(([, v]) => v >= 0.01));
    li.append(title, strip, barsList(shares));
    return li;
  }));
  for (const url of live.downloads) URL.revokeObjectURL(url);
  const { csv, type, ...doc } = msg;
  live.downloads = [
    URL.createObjectURL(new Blob([csv], { type: "text/csv" })),
    URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" })),
  ];
  $("download-csv").href = live.downloads[0];
  $("download-json").href = live.downloads[1];
  $("session").hidden = false;
}

// Opt-in: every 5 s the server's share of each emotion over the last 30 s -> the local table's entry.
async function askMood() {
  clearTimeout(live.moodTimer);
  if (!$("mood-toggle").checked || !live.running) return;
  if (!live.moods) {
    try { live.moods = await (await fetch("/static/moods.json")).json(); } catch { live.moods = {}; }
  }
  if (live.ws?.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "summary", window_s: 30 }));
  live.moodTimer = setTimeout(askMood, 5000);
}

function showMood(mood) {
  $("mood").hidden = !$("mood-toggle").checked;
  if ($("mood").hidden || !mood) return;
  const top = Object.entries(mood).sort((a, b) => b[1] - a[1])[0];
  const entry = top && live.moods?.[top[0]];
  $("mood-name").textContent = top ? `${name(top[0])} (${pct(top[1])})${entry ? ` · ${entry.label}` : ""}` : "no face yet";
  $("mood-list").replaceChildren(...(entry?.suggestions || []).map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

$("mood-toggle").addEventListener("change", () => { $("mood").hidden = !$("mood-toggle").checked; askMood(); });
$("live-toggle").addEventListener("click", () => (live.running || live.starting ? stopLive() : startLive()));
$("live-pause").addEventListener("click", () => (live.paused ? resumeLive() : pauseLive()));
document.addEventListener("visibilitychange", () => { if (!document.hidden) pump(); });

loadModel();
