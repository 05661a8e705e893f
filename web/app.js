// Autosky Deployments page: talks only to the public API (relative URLs, so it
// works wherever the API is mounted). Every value from the API is set with
// textContent (never parsed as HTML). With the JWT authorizer the token comes
// from the sign-in redirect (#id_token=… or #access_token=…) and is sent as a
// Bearer header; on the local sandbox no token is needed.
"use strict";

const $ = (id) => document.getElementById(id);
const STEP_SHORT = {
  "Initial validation": "Validate", "Stop preparation server": "Stop server",
  "Create image": "Image", "Create models": "Models",
  "Replace instances": "Replace", "Finalization": "Finalize",
};
let token = sessionStorage.getItem("autosky-token");
// The caller's role on each listed environment (viewer, deployer, administrator).
let roles = {};
let timer = null;
let openDetails = null;

(function readToken() {
  const h = new URLSearchParams(location.hash.slice(1));
  const t = h.get("id_token") || h.get("access_token");
  if (t) {
    token = t;
    sessionStorage.setItem("autosky-token", t);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`.${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "—");
function fmtDuration(ms) {
  if (ms == null) return "—";
  if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
const statusBadge = (s) => el("span", { class: `status s-${s}` }, s === "NotApplicable" ? "Not applicable" : s);
const envId = () => $("env").value;
// A viewer reads the history and details only: the page offers no action it would refuse.
const mayDeploy = () => roles[envId()] !== "viewer";

function applyRole() {
  const role = roles[envId()];
  $("deploy-card").hidden = !mayDeploy();
  $("role-note").hidden = mayDeploy();
  $("role-note").textContent = mayDeploy() ? ""
    : `You are a ${role} of ${envId()}: you can follow its deployments; starting, scheduling or cancelling one needs the deployer role.`;
}

// ---------------------------------------------------------------- form
function clearErrors() {
  for (const e of document.querySelectorAll(".error")) if (e.id !== "env-error") e.textContent = "";
  for (const e of document.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
}

// The API names the field at fault; show the message next to it.
function showProblem(err) {
  const field = err.problem && err.problem.field;
  const target = field && $(`${field}-error`);
  const input = { notificationEmails: "emails", at: "date", timezone: "timezone" }[field];
  if (target) {
    target.textContent = err.message;
    if (input) { $(input).setAttribute("aria-invalid", "true"); $(input).focus(); }
  } else {
    $("form-error").textContent = err.message;
  }
}

function formBody() {
  const emails = $("emails").value.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean);
  const body = {
    lockInstances: $("lockInstances").checked,
    stopPreparationServer: $("stopPreparationServer").checked,
  };
  if (emails.length) body.notificationEmails = emails;
  return body;
}

const scheduling = () => document.querySelector("input[name=mode]:checked").value === "schedule";

function onMode() {
  $("when").hidden = !scheduling();
  $("submit").textContent = scheduling() ? "Schedule" : "Publish";
}

function confirmDialog(text) {
  return new Promise((resolve) => {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    const done = (v) => { d.close(); resolve(v); };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    d.oncancel = (e) => { e.preventDefault(); done(false); };
    d.showModal();
    $("confirm-yes").focus();
  });
}

async function onSubmit(ev) {
  ev.preventDefault();
  clearErrors();
  const env = envId();
  if (!env) { $("form-error").textContent = "Choose an environment first."; return; }
  const body = formBody();
  let path = `/environments/${encodeURIComponent(env)}/deployments`;
  let question = `Publish a new version to ${env} now?`;
  if (scheduling()) {
    if (!$("date").value || !$("time").value) {
      $("at-error").textContent = "Choose a date and a time.";
      $("date").setAttribute("aria-invalid", "true");
      $("date").focus();
      return;
    }
    const time = $("time").value.length === 5 ? `${$("time").value}:00` : $("time").value;
    body.at = `${$("date").value}T${time}`;
    body.timezone = $("timezone").value;
    path = `/environments/${encodeURIComponent(env)}/schedules`;
    question = `Schedule a deployment of ${env} for ${$("date").value} ${time} (${body.timezone})?`;
  }
  if (!(await confirmDialog(question))) return;
  $("submit").disabled = true;
  try {
    const d = await api("POST", path, body);
    $("history-status").textContent = d.status === "Scheduled"
      ? `Deployment ${d.deploymentId} scheduled.` : `Deployment ${d.deploymentId} started.`;
    await loadHistory();
  } catch (err) {
    if (err instanceof ApiError) showProblem(err); else $("form-error").textContent = `Cannot reach the API: ${err.message}`;
  } finally {
    $("submit").disabled = false;
  }
}

// ------------------------------------------------------------- history
function stepList(steps) {
  const ul = el("ul", { class: "steps", "aria-label": "Steps" });
  for (const s of steps) {
    const time = s.durationMs != null ? ` ${fmtDuration(s.durationMs)}` : "";
    ul.append(el("li", { class: `s-${s.status}`, title: `${s.name}: ${s.status}${time}` },
      el("span", { class: "sr-only" }, `${s.name}: ${s.status}`),
      el("span", { "aria-hidden": "true" }, `${STEP_SHORT[s.name] || s.name}${time}`)));
  }
  return ul;
}

function row(d) {
  const when = d.status === "Scheduled"
    ? el("span", {}, "Scheduled for ", el("br"), d.schedule ? `${d.schedule.at.replace("T", " ")} ${d.schedule.timezone}` : fmtTime(d.scheduledFor))
    : fmtTime(d.startedAt || d.createdAt);
  const version = el("td", {}, d.generatedVersion ? `v${d.generatedVersion.launchTemplateVersion} (${d.generatedVersion.imageId})` : "—");
  if (d.rollbackOf) {
    version.append(el("br"), el("span", { class: "hint" },
      `Rollback to version ${d.rollbackOf.launchTemplateVersion} — deployment ${d.rollbackOf.deploymentId}`));
  }
  if (d.inService) version.append(el("br"), el("span", { class: "badge in-service" }, "In service"));
  const actions = el("td", {},
    el("button", { type: "button", class: "link", onclick: () => showDetails(d.deploymentId),
      "aria-label": `Details of deployment ${d.deploymentId}` }, "Details"));
  if (d.status === "Scheduled" && mayDeploy()) {
    actions.append(" ", el("button", { type: "button", class: "danger", onclick: () => cancelSchedule(d),
      "aria-label": `Cancel scheduled deployment ${d.deploymentId}` }, "Cancel"));
  }
  if (d.canRollBack && mayDeploy()) {
    const v = d.generatedVersion.launchTemplateVersion;
    actions.append(" ", el("button", { type: "button", class: "secondary", onclick: () => rollBack(d),
      "aria-label": `Roll back to version ${v} of deployment ${d.deploymentId}` }, "Roll back to this version"));
  }
  return el("tr", { "data-id": d.deploymentId, "data-status": d.status },
    el("td", {}, when), el("td", {}, stepList(d.steps)), el("td", {}, statusBadge(d.status)),
    version, actions);
}

async function loadHistory() {
  clearTimeout(timer);
  const env = envId();
  if (!env) return;
  try {
    const page = await api("GET", `/environments/${encodeURIComponent(env)}/deployments?limit=20`);
    const body = $("history").tBodies[0];
    body.replaceChildren(...page.items.map(row));
    if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: "5" }, "No deployment yet.")));
    const live = page.items.some((d) => d.status === "Running" || d.status === "Scheduled");
    // Follows a running deployment by itself; slower while only schedules wait.
    if (live) timer = setTimeout(loadHistory, page.items.some((d) => d.status === "Running") ? 2000 : 5000);
    if (openDetails) await showDetails(openDetails, true);
  } catch (err) {
    $("history-status").textContent = `History unavailable: ${err.message}`;
  }
}

async function cancelSchedule(d) {
  if (!(await confirmDialog(`Cancel the deployment scheduled for ${d.schedule ? d.schedule.at.replace("T", " ") + " " + d.schedule.timezone : fmtTime(d.scheduledFor)}?`))) return;
  try {
    await api("DELETE", `/environments/${encodeURIComponent(envId())}/schedules/${d.deploymentId}`);
    $("history-status").textContent = `Deployment ${d.deploymentId} cancelled.`;
  } catch (err) {
    $("history-status").textContent = `Could not cancel: ${err.message}`;
  }
  await loadHistory();
}

// Restores the version of an earlier Succeeded deployment: a rollback
// deployment with the options the form holds (no image is taken).
async function rollBack(d) {
  const v = d.generatedVersion;
  const env = envId();
  if (!(await confirmDialog(`Roll ${env} back to version ${v.launchTemplateVersion} (image ${v.imageId}, deployment ${d.deploymentId})? Every instance is replaced.`))) return;
  const body = formBody();
  delete body.stopPreparationServer;
  try {
    const r = await api("POST", `/environments/${encodeURIComponent(env)}/deployments/${d.deploymentId}/rollback`, body);
    $("history-status").textContent = `Rollback ${r.deploymentId} to version ${v.launchTemplateVersion} started.`;
  } catch (err) {
    $("history-status").textContent = `Could not roll back: ${err.message}`;
  }
  await loadHistory();
}

// ------------------------------------------------------------- details
async function showDetails(id, refresh) {
  let d;
  try {
    d = await api("GET", `/environments/${encodeURIComponent(envId())}/deployments/${id}`);
  } catch (err) {
    $("history-status").textContent = `Details unavailable: ${err.message}`;
    return;
  }
  const dl = el("dl", {});
  const add = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
  add("Status", statusBadge(d.status));
  add("Owner", d.owner);
  add("Model version", d.modelVersion != null ? `${d.modelVersion}` : "—");
  if (d.scheduledFor) add("Scheduled for", d.schedule ? `${d.schedule.at.replace("T", " ")} ${d.schedule.timezone}` : fmtTime(d.scheduledFor));
  add("Start", fmtTime(d.startedAt));
  add("End", fmtTime(d.endedAt));
  add("Duration", fmtDuration(d.durationMs));
  if (d.generatedVersion) add("Image", d.generatedVersion.imageId);
  if (d.rollbackOf) {
    add("Rollback to", el("span", {}, `version ${d.rollbackOf.launchTemplateVersion} — `,
      el("button", { type: "button", class: "link", onclick: () => showDetails(d.rollbackOf.deploymentId) },
        `deployment ${d.rollbackOf.deploymentId}`)));
  }
  if (d.inService) add("In service", "its version is the one in service");
  if (d.consoleUrl) add("Execution", el("a", { href: d.consoleUrl, target: "_blank", rel: "noopener" }, "Open in the Step Functions console"));
  const parts = [dl];
  if (d.error) {
    parts.push(el("p", { class: "err-box", role: "alert" },
      `${d.error.step ? d.error.step + " failed" : "Failed"}: ${d.error.message} (${d.error.name})`));
  }
  const open = new Set([...document.querySelectorAll("#details-body details[open]")].map((e) => e.dataset.step));
  for (const s of d.steps) {
    const list = el("ul", {});
    for (const a of s.actions || []) list.append(el("li", {}, `${new Date(a.at).toLocaleTimeString()} — ${a.message}`));
    if (!(s.actions || []).length) list.append(el("li", {}, "No action yet."));
    const det = el("details", { "data-step": s.name },
      el("summary", {}, `${s.name} · `, statusBadge(s.status), ` · ${fmtDuration(s.durationMs)}`), list);
    if (open.has(s.name)) det.open = true;
    parts.push(det);
  }
  $("details-title").textContent = `Deployment ${d.deploymentId}`;
  $("details-body").replaceChildren(...parts);
  const dlg = $("details");
  if (!refresh) {
    openDetails = id;
    dlg.showModal();
    $("details-close").focus();
  }
}

function closeDetails() {
  openDetails = null;
  $("details").close();
}

// ---------------------------------------------------------------- start
async function loadEnvironments() {
  try {
    const list = await api("GET", "/environments");
    roles = Object.fromEntries(list.items.map((e) => [e.environmentId, e.role]));
    const sel = $("env");
    sel.replaceChildren(...list.items.map((e) => el("option", { value: e.environmentId }, e.environmentId)));
    const wanted = new URLSearchParams(location.search).get("env");
    if (wanted && list.items.some((e) => e.environmentId === wanted)) sel.value = wanted;
    if (!list.items.length) $("env-error").textContent = "No environment is registered yet, or none you hold a role on.";
    applyRole();
  } catch (err) {
    $("env-error").textContent = err.status === 401
      ? "Sign in first: this page needs a token (see the README)." : `Cannot load environments: ${err.message}`;
  }
  await loadHistory();
}

function fillTimezones() {
  const here = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [here]).slice();
  if (!zones.includes("UTC")) zones.unshift("UTC");
  $("timezone").replaceChildren(...zones.map((z) => el("option", { value: z }, z)));
  $("timezone").value = zones.includes(here) ? here : "UTC";
}

document.addEventListener("DOMContentLoaded", () => {
  fillTimezones();
  for (const r of document.querySelectorAll("input[name=mode]")) r.addEventListener("change", onMode);
  $("deploy").addEventListener("submit", onSubmit);
  $("env").addEventListener("change", () => { openDetails = null; applyRole(); loadHistory(); });
  $("refresh").addEventListener("click", loadHistory);
  $("details-close").addEventListener("click", closeDetails);
  $("details").addEventListener("close", () => { openDetails = null; });
  onMode();
  loadEnvironments();
});
