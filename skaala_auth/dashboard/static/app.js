// skaala_auth key-management page: lists, creates, rotates and revokes a team's API keys and
// manages its members, through the management API (docs/management-api.md).
//
// Rules of this file:
// - every call goes to the API prefix on this origin with the session cookie
//   (credentials: "same-origin"); the browser adds the Origin header the API's CSRF check needs
//   to every POST, PATCH and DELETE;
// - text from the API is only ever set with textContent or attributes, never parsed as HTML;
// - a plaintext key lives in the "new key" dialog until it is closed, then it is wiped; it is
//   never logged, stored or put in a URL.

const config = JSON.parse(document.getElementById("dashboard-config").textContent);
const team = new URLSearchParams(window.location.search).get("team");
const UNUSED_DAYS = 30;
const DAY = 86400 * 1000;

const $ = (id) => document.getElementById(id);
const state = { keys: [], sort: { field: "created_at", dir: "desc" }, now: Date.now() };

// -- calling the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function teamPath(...parts) {
  return [config.api, "teams", team, ...parts].map((part, index) =>
    index === 0 ? part : encodeURIComponent(part)).join("/");
}

async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, "network", "Could not reach the server. Check your connection, then try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok && data !== null) return data;
  throw new ApiError(response.status, data && data.error, describeFailure(response.status, data));
}

function describeFailure(status, data) {
  const said = data && typeof data.message === "string" ? data.message : "";
  if (status === 401) return "You are not signed in, or your session has ended. Sign in again.";
  if (status === 503) {
    return "The key service is unavailable for a moment. Nothing was changed: try again shortly.";
  }
  if (status === 429) return "Too many requests. Wait a moment, then try again.";
  if (said) return said.endsWith(".") ? said : `${said}.`;
  return `The server answered with an unexpected error (HTTP ${status}). Nothing was changed.`;
}

// -- time ----------------------------------------------------------------------------------------

const relative = new Intl.RelativeTimeFormat("en", { numeric: "always" });
const exact = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

function ago(date) {
  const seconds = (date.getTime() - state.now) / 1000;
  const size = Math.abs(seconds);
  if (size < 45) return seconds <= 0 ? "just now" : "in a moment";
  const units = [
    // 350 days and more is "a year": a key made for 365 days expires "in 1 year", not "in 12 months".
    ["year", 350 * 86400, 365 * 86400], ["month", 30 * 86400], ["day", 86400], ["hour", 3600], ["minute", 60],
  ];
  for (const [unit, from, length = from] of units) {
    if (size >= from || unit === "minute") {
      return relative.format(Math.round(seconds / length) || Math.sign(seconds), unit);
    }
  }
  return "";
}

// A <time> with the exact moment on hover (title) and for screen readers (hidden text).
function timeCell(iso, { style = "relative", none = "never" } = {}) {
  const cell = document.createDocumentFragment();
  if (!iso) {
    cell.append(none);
    return cell;
  }
  const date = new Date(iso);
  const node = document.createElement("time");
  node.dateTime = iso;
  node.title = exact.format(date);
  node.textContent = style === "date" ? dateOnly.format(date) : ago(date);
  const spoken = document.createElement("span");
  spoken.className = "visually-hidden";
  spoken.textContent = ` (${exact.format(date)})`;
  cell.append(node, spoken);
  return cell;
}

// -- helpers -------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// A table cell: its label for narrow screens (where each row is a card) and its content,
// kept in one box so that the card's two columns stay label | content.
function cell(label, className, ...children) {
  // Explicit roles: narrow screens show rows as cards (display: block), which may drop the
  // table's semantics in some browsers.
  const props = { "data-label": label, role: "cell" };
  if (className) props.className = className;
  return el("td", props, el("div", { className: "cell" }, ...children));
}

function showOnly(id) {
  for (const section of ["loading", "choose-team", "signed-out", "forbidden", "manage"]) {
    $(section).hidden = section !== id;
  }
}

function showAlert(message, kind = "error") {
  const alert = $("alert");
  alert.textContent = message;
  alert.classList.toggle("success", kind === "success");
  alert.hidden = false;
}

function clearAlert() {
  $("alert").hidden = true;
  $("alert").textContent = "";
}

function announce(message) {
  $("status").textContent = message;
}

function showFormError(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = !message;
}

// A failed call: a session that ended or a refusal changes the whole page; anything else is
// shown where the action was taken.
function handleFailure(error, where) {
  if (error.status === 401) {
    signedOut();
    return;
  }
  if (where) showFormError(where, error.message);
  else showAlert(error.message);
}

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// -- page states -----------------------------------------------------------------------------

function signedOut() {
  showOnly("signed-out");
  closeDialogs();
  const link = $("sign-in-link");
  if (config.signInUrl) {
    link.href = config.signInUrl;
    link.hidden = false;
  } else {
    $("signed-out-text").textContent =
      "You are not signed in, or your session has ended. Sign in to your dashboard, then reload this page.";
  }
  $("signed-out-title").tabIndex = -1;
  $("signed-out-title").focus();
}

function forbidden(error) {
  showOnly("forbidden");
  if (error.message.startsWith("You are not a member")) {
    $("forbidden-title").textContent = "You are not a member of this team";
    $("forbidden-text").textContent = `You are signed in, but not as a member of “${team}”. Check the team in the address.`;
  } else {
    $("forbidden-text").textContent =
      `Only team owners and admins can manage keys, and you are neither in “${team}”.`;
  }
  $("forbidden-detail").textContent = `The server said: ${error.message}`;
  if (config.signInUrl) {
    $("switch-user-link").href = config.signInUrl;
    $("switch-user").hidden = false;
  }
  $("forbidden-title").tabIndex = -1;
  $("forbidden-title").focus();
}

// -- keys ----------------------------------------------------------------------------------------

const STATUS_ORDER = { active: 0, expired: 1, revoked: 2 };

function sortValue(key, field) {
  if (field === "name") return key.name.toLowerCase();
  if (field === "status") return STATUS_ORDER[key.status] ?? 9;
  const value = key[field];
  return value ? Date.parse(value) : -Infinity; // never used sorts as the oldest use
}

function sortedKeys() {
  const { field, dir } = state.sort;
  const sign = dir === "asc" ? 1 : -1;
  return [...state.keys].sort((a, b) => {
    const x = sortValue(a, field);
    const y = sortValue(b, field);
    if (x < y) return -sign;
    if (x > y) return sign;
    return Date.parse(b.created_at) - Date.parse(a.created_at);
  });
}

function isUnused(key) {
  if (key.status !== "active") return false;
  return !key.last_used_at || state.now - Date.parse(key.last_used_at) > UNUSED_DAYS * DAY;
}

function renderKeys() {
  const body = $("keys-body");
  body.replaceChildren();
  const replaced = new Map(state.keys.filter((k) => k.rotated_from).map((k) => [k.rotated_from, k]));
  for (const key of sortedKeys()) {
    const badges = [el("span", { className: `badge ${key.status}`, text: key.status })];
    if (isUnused(key)) {
      badges.push(el("span", {
        className: "badge unused",
        text: key.last_used_at ? `unused ${UNUSED_DAYS}+ days` : "never used",
      }));
    }
    if (key.status === "active" && replaced.has(key.id)) {
      badges.push(el("span", { className: "badge rotating", text: "replaced: works until it expires" }));
    }
    const actions = [];
    if (key.status === "active") {
      actions.push(el("div", { className: "actions" },
        el("button", { type: "button", className: "small", onclick: () => rotateKey(key) },
          "Rotate", el("span", { className: "visually-hidden", text: ` key ${key.name}` })),
        el("button", { type: "button", className: "small link-danger", onclick: () => revokeKey(key) },
          "Revoke", el("span", { className: "visually-hidden", text: ` key ${key.name}` }))));
    } else {
      actions.push(el("span", { className: "hint", text: "No actions" }));
    }
    const scopes = el("ul", { className: "scope-list" }, ...key.scopes.map((scope) => el("li", { text: scope })));
    const row = el("tr", { className: key.status === "active" ? "" : "inactive", "data-key-id": key.id, role: "row" },
      cell("Name", "key-name", key.name),
      cell("Key", "", el("code", { className: "prefix", text: key.prefix })),
      cell("Scopes", "", scopes),
      cell("Created", "when", timeCell(key.created_at, { style: "date" })),
      cell("Expires", "when expires", timeCell(key.expires_at, { none: "never" })),
      cell("Last used", "when last-used", timeCell(key.last_used_at)),
      cell("Status", "status", ...badges),
      cell("Actions", "row-actions", ...actions));
    body.append(row);
  }
  const active = state.keys.filter((k) => k.status === "active");
  const unused = active.filter(isUnused).length;
  $("keys-table").hidden = state.keys.length === 0;
  $("keys-empty").hidden = state.keys.length !== 0;
  $("keys-summary").textContent = state.keys.length === 0 ? "" :
    `${state.keys.length} ${state.keys.length === 1 ? "key" : "keys"}, ${active.length} active.` +
    (unused ? ` ${unused} active ${unused === 1 ? "key is" : "keys are"} unused (never used, or not for ${UNUSED_DAYS} days): revoke what nobody needs.` : "");
  for (const th of document.querySelectorAll("#keys-table th[data-sort]")) {
    const on = th.dataset.sort === state.sort.field;
    th.setAttribute("aria-sort", on ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none");
  }
  const option = `${state.sort.field}:${state.sort.dir}`;
  if ([...$("sort-select").options].some((o) => o.value === option)) $("sort-select").value = option;
}

async function loadKeys() {
  const data = await call("GET", teamPath("api-keys"));
  state.keys = data.api_keys;
  state.now = Date.now();
  renderKeys();
}

function setSort(field, dir) {
  state.sort = { field, dir };
  renderKeys();
  announce(`Sorted by ${field.replace("_at", "").replace("_", " ")}, ${dir === "asc" ? "ascending" : "descending"}.`);
}

// -- creating ------------------------------------------------------------------------------------

function scopeGroup(name) {
  const action = name.split(":").pop();
  if (name.startsWith("read:") || action === "read") return "read";
  if (name.startsWith("write:") || action === "write") return "write";
  return "manage";
}

const GROUPS = [
  ["read", "Read", "See data; change nothing."],
  ["write", "Write", "Create and change data. Does not include reading it."],
  ["manage", "Manage", "Change how your account is set up. Rarely needed by an integration."],
];

function renderScopes() {
  const container = $("scope-groups");
  for (const [group, title, text] of GROUPS) {
    const scopes = config.scopes.filter((scope) => scopeGroup(scope.name) === group);
    if (!scopes.length) continue;
    const box = el("div", { className: "scope-group", role: "group", "aria-labelledby": `scope-group-${group}` },
      el("h3", { id: `scope-group-${group}`, text: title }),
      el("p", { className: "hint", text }));
    for (const scope of scopes) {
      const id = `scope-${scope.name.replace(/[^a-z0-9]+/g, "-")}`;
      box.append(el("label", { className: "scope-option", for: id },
        el("input", { type: "checkbox", id, name: "scopes", value: scope.name }),
        el("span", { className: "scope-name", text: scope.name }),
        el("span", { className: "scope-text", text: scope.description || "" })));
    }
    container.append(box);
  }
}

async function createKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  showFormError("create-error", "");
  const name = $("key-name").value.trim();
  const scopes = [...form.querySelectorAll("input[name=scopes]:checked")].map((box) => box.value);
  const days = Number($("key-expiry").value);
  if (!name) {
    showFormError("create-error", "Give the key a name, so that you know later what uses it.");
    $("key-name").focus();
    return;
  }
  if (!scopes.length) {
    showFormError("create-error", "Choose at least one scope: the fewest that the integration needs.");
    form.querySelector("input[name=scopes]").focus();
    return;
  }
  if (!Number.isInteger(days) || days < 1 || days > 1825) {
    showFormError("create-error", "Expiry: a whole number of days, from 1 to 1825.");
    $("key-expiry").focus();
    return;
  }
  await busy(button, async () => {
    try {
      const made = await call("POST", teamPath("api-keys"), { name, scopes, expires_in: days * 86400 });
      form.reset();
      showKey(made.key, `Key “${made.api_key.name}” created`);
      announce(`Key “${made.api_key.name}” created. Copy it now: it will not be shown again.`);
      await loadKeys();
    } catch (error) {
      handleFailure(error, "create-error");
    }
  });
}

// -- the one-time display ------------------------------------------------------------------------

function showKey(key, title) {
  $("key-dialog-title").textContent = title;
  $("new-key").value = key;
  $("new-key-export").value = `export SKAALA_API_KEY=${key}`;
  $("copy-status").textContent = "";
  $("key-dialog").showModal();
  // The whole key is always in view: as many lines as it takes (none is cut off).
  for (const box of [$("new-key"), $("new-key-export")]) {
    box.rows = 1;
    while (box.scrollHeight > box.clientHeight && box.rows < 4) box.rows += 1;
  }
  $("new-key").focus();
  $("new-key").select();
}

async function copyFrom(button) {
  const input = $(button.dataset.copy);
  let copied = false;
  try {
    await navigator.clipboard.writeText(input.value);
    copied = true;
  } catch {
    input.focus();
    input.select();
    copied = document.execCommand && document.execCommand("copy");
  }
  $("copy-status").textContent = copied
    ? (button.id === "copy-key" ? "The key is copied to the clipboard." : "The export line is copied to the clipboard.")
    : "Could not copy: the text is selected, press Ctrl+C (⌘C on a Mac).";
}

function wipeKey() {
  $("new-key").value = "";
  $("new-key-export").value = "";
  $("copy-status").textContent = "";
  $("keys-title").tabIndex = -1;
  $("keys-title").focus();
}

// -- confirmations: rotate, revoke, remove a member -----------------------------------------

let pending = null;

function confirmThen({ title, text, ok, danger = true, grace = false, run }) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok;
  $("confirm-ok").className = danger ? "danger" : "primary";
  $("grace-field").hidden = !grace;
  $("grace-select").value = "86400";
  showFormError("confirm-error", "");
  pending = run;
  $("confirm-dialog").showModal();
  $("confirm-cancel").focus(); // the safe choice has the focus
}

async function confirmed() {
  const run = pending;
  if (!run) return;
  await busy($("confirm-ok"), async () => {
    try {
      await run(Number($("grace-select").value));
      pending = null;
      $("confirm-dialog").close();
    } catch (error) {
      if (error.status === 401) handleFailure(error);
      else showFormError("confirm-error", error.message);
    }
  });
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

function rotateKey(key) {
  confirmThen({
    title: `Rotate “${key.name}”?`,
    text: "A new key is made with the same name, scopes and expiry period, and shown once. " +
      "Move everything that uses the current key to the new one before its grace period ends.",
    ok: "Rotate key",
    danger: false,
    grace: true,
    run: async (grace) => {
      const made = await call("POST", teamPath("api-keys", key.id, "rotate"), { grace_period: grace });
      $("confirm-dialog").close();
      pending = null;
      showKey(made.key, `New key for “${made.api_key.name}”`);
      announce(`Key “${key.name}” rotated. Copy the new key now: it will not be shown again.`);
      await loadKeys().catch((error) => handleFailure(error));
    },
  });
}

function revokeKey(key) {
  confirmThen({
    title: `Revoke “${key.name}”?`,
    text: `Anything that uses ${key.prefix} is refused (401) from now on. This cannot be undone.`,
    ok: "Revoke key",
    run: async () => {
      await call("DELETE", teamPath("api-keys", key.id));
      await loadKeys().catch((error) => handleFailure(error));
      showAlert(`Key “${key.name}” (${key.prefix}) is revoked.`, "success");
      announce(`Key “${key.name}” revoked.`);
      $("keys-title").tabIndex = -1;
      $("keys-title").focus();
    },
  });
}

// -- members ---------------------------------------------------------------------------------

const ROLES = ["member", "admin", "owner"];

function renderMembers(members) {
  const body = $("members-body");
  body.replaceChildren();
  for (const member of members) {
    const selectId = `role-${member.user_id.replace(/[^A-Za-z0-9_-]+/g, "-")}`;
    const select = el("select", { id: selectId, "aria-label": `Role of ${member.user_id}` },
      ...ROLES.map((role) => el("option", { value: role, text: role[0].toUpperCase() + role.slice(1) })));
    select.value = member.role;
    const save = el("button", { type: "button", className: "small", onclick: (event) => changeRole(member, select, event.currentTarget) },
      "Save role", el("span", { className: "visually-hidden", text: ` of ${member.user_id}` }));
    const remove = el("button", { type: "button", className: "small link-danger", onclick: () => removeMember(member) },
      "Remove", el("span", { className: "visually-hidden", text: ` ${member.user_id}` }));
    body.append(el("tr", { role: "row" },
      cell("User", "key-name", member.user_id),
      cell("Role", "", el("div", { className: "member-role" }, select, save)),
      cell("Added", "", timeCell(member.added_at, { style: "date", none: "—" })),
      cell("Actions", "row-actions", el("div", { className: "actions" }, remove))));
  }
}

async function loadMembers() {
  try {
    const data = await call("GET", teamPath("members"));
    renderMembers(data.members);
    $("members").hidden = false;
  } catch (error) {
    if (error.status === 401) handleFailure(error);
    else $("members").hidden = true; // an admin-only page elsewhere may refuse: keys still work
  }
}

async function changeRole(member, select, button) {
  clearAlert();
  await busy(button, async () => {
    try {
      await call("PATCH", teamPath("members", member.user_id), { role: select.value });
      showAlert(`${member.user_id} is now ${select.value === "admin" ? "an" : "a"} ${select.value}.`, "success");
      await loadMembers();
    } catch (error) {
      select.value = member.role;
      handleFailure(error);
    }
  });
}

function removeMember(member) {
  confirmThen({
    title: `Remove ${member.user_id} from the team?`,
    text: "Their keys for this team stop working at once (403). They work again if the user is added back before the keys expire.",
    ok: "Remove member",
    run: async () => {
      await call("DELETE", teamPath("members", member.user_id));
      showAlert(`${member.user_id} is removed from the team.`, "success");
      await loadMembers();
    },
  });
}

async function addMember(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showFormError("member-error", "");
  const userId = $("member-user").value.trim();
  if (!userId) {
    showFormError("member-error", "Enter the user id of the person to add.");
    $("member-user").focus();
    return;
  }
  await busy(form.querySelector("button[type=submit]"), async () => {
    try {
      await call("POST", teamPath("members"), { user_id: userId, role: $("member-role").value });
      form.reset();
      showAlert(`${userId} is added to the team.`, "success");
      await loadMembers();
    } catch (error) {
      handleFailure(error, "member-error");
    }
  });
}

// -- start ---------------------------------------------------------------------------------------

async function start() {
  if (config.notice) {
    $("notice").textContent = config.notice;
    $("notice").hidden = false;
  }
  if (!team) {
    showOnly("choose-team");
    return;
  }
  $("team-name").textContent = team;
  $("team-line").hidden = false;
  document.title = `API keys · ${team}`;
  try {
    await loadKeys();
  } catch (error) {
    if (error.status === 401) signedOut();
    else if (error.status === 403) forbidden(error);
    else {
      showOnly(null);
      showAlert(error.message);
    }
    return;
  }
  showOnly("manage");
  renderScopes();
  await loadMembers();
}

$("create-form").addEventListener("submit", createKey);
$("member-form").addEventListener("submit", addMember);
$("sort-select").addEventListener("change", (event) => {
  const [field, dir] = event.currentTarget.value.split(":");
  setSort(field, dir);
});
for (const th of document.querySelectorAll("#keys-table th[data-sort]")) {
  th.querySelector("button").addEventListener("click", () => {
    const field = th.dataset.sort;
    const same = state.sort.field === field;
    const dir = same ? (state.sort.dir === "asc" ? "desc" : "asc") : (field === "name" || field === "status" ? "asc" : "desc");
    setSort(field, dir);
  });
}
$("confirm-ok").addEventListener("click", confirmed);
$("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close());
$("confirm-dialog").addEventListener("close", () => { pending = null; });
for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", () => copyFrom(button));
}
$("key-dialog").addEventListener("close", wipeKey);
$("key-dialog").addEventListener("cancel", (event) => {
  // Escape would lose the key unseen: ask for the explicit button instead.
  event.preventDefault();
  $("copy-status").textContent = "Copy the key first, then choose “I have stored it”.";
});

start();
