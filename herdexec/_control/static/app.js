// The operator's page: reads GET /herd once a second and draws it; resizes with PATCH /herd.
// Everything comes from the herd's own server; the token, if the server wants one, is
// kept in sessionStorage (this tab only) and sent as "Authorization: Bearer".

const POLL_MS = 1000;
const BACKOFF_MAX_MS = 16000; // retries after 1, 2, 4, 8, then every 16 s
const TIMEOUT_MS = 5000;
const WINDOW_S = 300; // the chart's span
const RATE_S = 10; // rates are over the last ten seconds
const SMOOTH_S = 5; // and the chart's over five
const COUNTERS = ["succeeded", "retried", "failed", "cancelled"];
const TOKEN_KEY = "herdexec.token";
const RESUME_KEY = "herdexec.resume";

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en");
const rate = new Intl.NumberFormat("en", { maximumFractionDigits: 1, minimumFractionDigits: 1 });

let samples = []; // {t: seconds, name, and the COUNTERS}, oldest first
let failures = 0; // polls in a row that got no answer
let timer = null;
let pendingSize = null; // a resize waiting for a token

// -- talking to the server ---------------------------------------------------------

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  return { status: response.status, body: data, sentToken: Boolean(token) };
}

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(poll, delay);
}

async function poll() {
  let answer;
  try {
    answer = await call("GET", "/herd");
  } catch {
    return lost("no answer from the server");
  }
  if (answer.status === 401) {
    // Reads need a token: wait for one rather than ask again every second.
    clearTimeout(timer);
    failures = 0;
    connection("locked", "Needs a token");
    return askToken(answer.sentToken, "to show this herd's figures");
  }
  if (answer.status !== 200) {
    return lost(answer.body.msg || `the server answered ${answer.status}`);
  }
  if (typeof answer.body.num !== "number" || !Array.isArray(answer.body.duration_counts)) {
    return lost("what answers here is not a herd's control server");
  }
  failures = 0;
  connection("live", "Live");
  draw(answer.body);
  schedule(POLL_MS);
}

function lost(why) {
  failures += 1;
  const delay = Math.min(POLL_MS * 2 ** (failures - 1), BACKOFF_MAX_MS);
  connection("disconnected", `Disconnected: ${why}. Retrying in ${delay / 1000} s.`);
  schedule(delay);
}

function connection(state, text) {
  const element = $("connection");
  if (element.textContent === text) return; // a live region: say nothing twice
  element.dataset.state = state;
  element.textContent = text;
  document.body.classList.toggle("stale", state !== "live");
  for (const button of document.querySelectorAll("#resize button")) {
    button.disabled = state === "disconnected";
  }
}

// -- resizing ----------------------------------------------------------------------

async function resize(num) {
  say("");
  let answer;
  try {
    answer = await call("PATCH", "/herd", { num });
  } catch {
    return say("No answer from the server: the herd may not have been resized.", "error");
  }
  if (answer.status === 401) {
    pendingSize = num;
    say(answer.body.msg || "This herd needs a token.", "error");
    return askToken(answer.sentToken, "to resize this herd");
  }
  if (answer.status !== 200) {
    return say(answer.body.msg || `The server answered ${answer.status}.`, "error");
  }
  const done = answer.body.msg === "success" ? `Herd size set to ${answer.body.num}.` : `${answer.body.msg}.`;
  say(done, "ok");
  schedule(0); // show the new size now
}

function say(text, kind = "") {
  const element = $("control-msg");
  element.textContent = text;
  element.dataset.kind = kind;
}

function wanted() {
  const text = $("size").value.trim();
  if (!/^-?\d+$/.test(text)) {
    say("The herd size must be a whole number.", "error");
    return null;
  }
  return Number(text);
}

$("resize").addEventListener("submit", (event) => {
  event.preventDefault();
  const num = wanted();
  if (num !== null) resize(num);
});

$("pause").addEventListener("click", () => resize(0)); // drawControls() noted the size

$("resume").addEventListener("click", () => {
  const size = Number(sessionStorage.getItem(RESUME_KEY));
  if (size > 0) resize(size);
});

// -- the token ---------------------------------------------------------------------

function askToken(wasWrong, purpose) {
  if (wasWrong) sessionStorage.removeItem(TOKEN_KEY);
  $("token-why").textContent = wasWrong
    ? "The server refused the token: it is wrong. Enter the right one."
    : `The server needs its token ${purpose}.`;
  $("token-why").dataset.kind = wasWrong ? "error" : "";
  $("token-form").hidden = false;
  $("token-set").hidden = true;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("token-form").hidden = true;
  $("token-set").hidden = false;
  say("");
  if (pendingSize !== null) {
    const num = pendingSize;
    pendingSize = null;
    resize(num);
  } else {
    schedule(0);
  }
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $("token-set").hidden = true;
});

// -- drawing -----------------------------------------------------------------------

function draw(herd) {
  const now = performance.now() / 1000;
  const last = samples[samples.length - 1];
  // Another herd, or the same name after a restart: its counters start over.
  if (last && (last.name !== herd.name || COUNTERS.some((c) => herd[c] < last[c]))) samples = [];
  samples.push({ t: now, name: herd.name, ...Object.fromEntries(COUNTERS.map((c) => [c, herd[c]])) });
  while (samples.length > 2 && samples[0].t < now - WINDOW_S - RATE_S) samples.shift();

  $("name").textContent = herd.name;
  document.title = `${herd.name} · herdexec`;
  for (const element of document.querySelectorAll("[data-field]")) {
    element.textContent = number.format(herd[element.dataset.field]);
  }
  drawControls(herd);
  drawRates(now);
  drawChart(now);
  drawDurations(herd);
}

function drawControls(herd) {
  const size = $("size");
  size.max = herd.max_herd_size;
  if (document.activeElement !== size) size.value = herd.num;
  if (herd.num > 0) sessionStorage.setItem(RESUME_KEY, String(herd.num));
  const paused = herd.num === 0;
  const resumeTo = Number(sessionStorage.getItem(RESUME_KEY));
  $("paused").hidden = !paused;
  $("pause").hidden = paused;
  $("resume").hidden = !paused;
  $("resume").disabled = !(resumeTo > 0);
  $("resume").title = resumeTo > 0 ? `Back to ${resumeTo}` : "Set a herd size to start it";
}

function drawRates(now) {
  const last = samples[samples.length - 1];
  const first = samples.find((s) => s.t >= now - RATE_S - 0.5) || last;
  const seconds = last.t - first.t;
  for (const element of document.querySelectorAll("[data-rate]")) {
    const counter = element.dataset.rate;
    element.textContent = seconds > 0 ? `${rate.format((last[counter] - first[counter]) / seconds)}/s` : "";
  }
}

function drawChart(now) {
  // Each point is the rate over the SMOOTH_S seconds before it: one-second steps jitter.
  const points = { succeeded: [], failed: [] };
  let top = 0;
  let from = 0;
  for (let i = 1; i < samples.length; i += 1) {
    const b = samples[i];
    while (samples[from + 1].t <= b.t - SMOOTH_S) from += 1;
    const a = samples[from];
    const x = WINDOW_S - (now - b.t);
    if (x < 0 || b.t <= a.t) continue;
    for (const series of Object.keys(points)) {
      const value = (b[series] - a[series]) / (b.t - a.t);
      points[series].push([x, value]);
      top = Math.max(top, value);
    }
  }
  top = niceCeiling(top);
  for (const [series, list] of Object.entries(points)) {
    const text = list.map(([x, v]) => `${x.toFixed(1)},${(100 - (v / top) * 98).toFixed(1)}`).join(" ");
    $(`line-${series}`).setAttribute("points", text);
  }
  $("chart-top").textContent = `${number.format(top)}/s`;
  const current = (series) => rate.format(points[series].length ? points[series].at(-1)[1] : 0);
  $("chart").setAttribute(
    "aria-label",
    `Works ended per second over the last 5 minutes: now ${current("succeeded")} succeeded and ${current("failed")} failed per second`,
  );
}

function niceCeiling(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value);
}

function drawDurations(herd) {
  const counts = herd.duration_counts;
  const total = counts.reduce((a, b) => a + b, 0);
  const most = Math.max(1, ...counts);
  $("durations-summary").textContent = total
    ? `${number.format(total)} attempts, ${seconds(herd.duration_sum / total)} on average`
    : "No attempt has ended yet.";
  const list = $("histogram");
  while (list.children.length < counts.length) {
    const row = document.createElement("li");
    row.innerHTML = '<span class="le"></span><span class="bar"><span></span></span><span class="count"></span>';
    list.append(row);
  }
  herd.duration_buckets.forEach((bound, i) => {
    const row = list.children[i];
    row.querySelector(".le").textContent = bound === null ? `> ${seconds(herd.duration_buckets[i - 1])}` : `≤ ${seconds(bound)}`;
    row.querySelector(".bar > span").style.width = `${(counts[i] / most) * 100}%`;
    row.querySelector(".count").textContent = number.format(counts[i]);
  });
}

function seconds(value) {
  return value < 1 ? `${+(value * 1000).toPrecision(3)} ms` : `${+value.toPrecision(3)} s`;
}

if (sessionStorage.getItem(TOKEN_KEY)) $("token-set").hidden = false;
poll();
