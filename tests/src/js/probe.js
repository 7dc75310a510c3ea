// Postwarden e2e probe: runs as a Marionette chrome-context script body.
// arguments[0] = {prefs: [names], extensions: [file extensions]}
// Returns a Promise of a JSON-able report of what the running Thunderbird uses.
const query = arguments[0] || {};
return (async () => {
  const { MailServices } = ChromeUtils.importESModule(
    "resource:///modules/MailServices.sys.mjs"
  );
  const errors = [];
  const attempt = (what, fn, fallback = null) => {
    try {
      return fn();
    } catch (e) {
      errors.push(`${what}: ${e}`);
      return fallback;
    }
  };
  // Read an attribute that may legitimately be unavailable (returns null).
  const maybe = fn => {
    try {
      const v = fn();
      return v === undefined ? null : v;
    } catch (e) {
      return null;
    }
  };

  // ---- prefs ----
  const P = Services.prefs;
  const defaults = P.getDefaultBranch("");
  const typeNames = {
    [P.PREF_INVALID]: "invalid",
    [P.PREF_STRING]: "string",
    [P.PREF_INT]: "int",
    [P.PREF_BOOL]: "bool",
  };
  const readBranch = (branch, name, type) => {
    switch (type) {
      case P.PREF_STRING:
        return branch.getStringPref(name);
      case P.PREF_INT:
        return branch.getIntPref(name);
      case P.PREF_BOOL:
        return branch.getBoolPref(name);
      default:
        return null;
    }
  };
  const readPref = name => {
    const type = P.getPrefType(name);
    const locked = P.prefIsLocked(name);
    const hasUserValue = P.prefHasUserValue(name);
    const out = {
      type: typeNames[type] || String(type),
      value: maybe(() => readBranch(P, name, type)),
      defaultValue: maybe(() => readBranch(defaults, name, type)),
      userValue: null,
      locked,
      hasUserValue,
    };
    if (hasUserValue) {
      if (!locked) {
        out.userValue = out.value;
      } else {
        // A locked pref reads as its default; the user value is only visible
        // while unlocked. Unlock, read, and lock again in the same tick.
        try {
          P.unlockPref(name);
          out.userValue = maybe(() => readBranch(P, name, type));
        } finally {
          P.lockPref(name);
        }
      }
    }
    return out;
  };
  const prefs = {};
  for (const name of query.prefs || []) {
    prefs[name] = attempt(`pref ${name}`, () => readPref(name));
  }

  // ---- policies ----
  const policyStatusNames = {};
  for (const k of Object.keys(Ci.nsIEnterprisePolicies)) {
    const v = Ci.nsIEnterprisePolicies[k];
    if (typeof v == "number") {
      policyStatusNames[v] = k;
    }
  }
  const policiesStatusCode = attempt("policies.status", () => Services.policies.status);
  const policies_status =
    policiesStatusCode === null
      ? null
      : policyStatusNames[policiesStatusCode] || String(policiesStatusCode);
  const active_policies = attempt(
    "policies.getActivePolicies",
    () => Services.policies.getActivePolicies() || null
  );

  // ---- accounts, servers, identities ----
  const accounts = [];
  const servers = {};
  const identities = {};
  const readServer = s => {
    const out = {
      key: s.key,
      type: s.type,
      hostName: maybe(() => s.hostName ?? s.hostname),
      port: maybe(() => s.port),
      username: maybe(() => s.username),
      doBiff: maybe(() => s.doBiff),
      biffMinutes: maybe(() => s.biffMinutes),
      loginAtStartup: maybe(() => s.loginAtStartUp ?? s.loginAtStartup),
      socketType: maybe(() => s.socketType),
      authMethod: maybe(() => s.authMethod),
    };
    if (s.type == "pop3") {
      const pop = attempt(`QI ${s.key} nsIPop3IncomingServer`, () =>
        s.QueryInterface(Ci.nsIPop3IncomingServer)
      );
      if (pop) {
        out.leaveMessagesOnServer = maybe(() => pop.leaveMessagesOnServer);
        out.deleteMailLeftOnServer = maybe(() => pop.deleteMailLeftOnServer);
        out.deleteByAgeFromServer = maybe(() => pop.deleteByAgeFromServer);
        out.numDaysToLeaveOnServer = maybe(() => pop.numDaysToLeaveOnServer);
        out.downloadOnBiff = maybe(() => pop.downloadOnBiff);
      }
    }
    return out;
  };
  const readIdentity = id => ({
    key: id.key,
    email: maybe(() => id.email),
    fullName: maybe(() => id.fullName),
    replyTo: maybe(() => id.replyTo),
    smtpServerKey: maybe(() => id.smtpServerKey),
  });
  for (const account of MailServices.accounts.accounts) {
    const entry = { key: account.key, server: null, identities: [] };
    const s = attempt(`account ${account.key} incomingServer`, () => account.incomingServer);
    if (s) {
      servers[s.key] = attempt(`server ${s.key}`, () => readServer(s));
      entry.server = s.key;
    }
    for (const id of account.identities) {
      identities[id.key] = attempt(`identity ${id.key}`, () => readIdentity(id));
      entry.identities.push(id.key);
    }
    accounts.push(entry);
  }

  // ---- outgoing (SMTP) servers ----
  const smtp = {};
  const outgoing = MailServices.outgoingServer || MailServices.smtp;
  for (const srv of attempt("outgoing servers", () => [...outgoing.servers], [])) {
    let sm = null;
    try {
      sm = srv.QueryInterface(Ci.nsISmtpServer);
    } catch (e) {}
    smtp[srv.key] = {
      key: srv.key,
      type: maybe(() => srv.type),
      hostname: maybe(() => (sm || srv).hostname),
      port: maybe(() => (sm || srv).port),
      socketType: maybe(() => srv.socketType),
      authMethod: maybe(() => srv.authMethod),
      username: maybe(() => srv.username),
    };
  }

  // ---- attachment handlers ----
  const H = Ci.nsIHandlerInfo;
  const actionNames = {};
  for (const k of [
    "saveToDisk",
    "alwaysAsk",
    "useHelperApp",
    "handleInternally",
    "useSystemDefault",
  ]) {
    if (typeof H[k] == "number") {
      actionNames[H[k]] = k;
    }
  }
  const handlers = {};
  const mime = Cc["@mozilla.org/mime;1"].getService(Ci.nsIMIMEService);
  const handlerSvc = Cc["@mozilla.org/uriloader/handler-service;1"].getService(
    Ci.nsIHandlerService
  );
  for (const ext of query.extensions || []) {
    handlers[ext] = attempt(`handler .${ext}`, () => {
      const info = mime.getFromTypeAndExtension("", ext);
      return {
        type: info.type,
        preferredAction: actionNames[info.preferredAction] || String(info.preferredAction),
        preferredActionCode: info.preferredAction,
        alwaysAskBeforeHandling: info.alwaysAskBeforeHandling,
        stored: maybe(() => handlerSvc.exists(info)),
      };
    });
  }
  const handler_action_codes = {};
  for (const [code, name] of Object.entries(actionNames)) {
    handler_action_codes[name] = Number(code);
  }

  // ---- stored logins ----
  const logins = { decryptable: null, stored: null, origins: [] };
  try {
    if (Services.logins.initializationPromise) {
      await Services.logins.initializationPromise;
    }
    let all = Services.logins.getAllLogins();
    if (all && typeof all.then == "function") {
      all = await all;
    }
    logins.decryptable = all.length;
    logins.origins = all.map(l => l.origin);
  } catch (e) {
    errors.push(`logins.getAllLogins: ${e}`);
  }
  // countLogins[Async]() matches on the stored (encrypted) records without
  // decrypting, so it also counts entries this profile cannot decrypt.
  try {
    if (typeof Services.logins.countLoginsAsync == "function") {
      logins.stored = await Services.logins.countLoginsAsync("", "", "");
    } else {
      logins.stored = Services.logins.countLogins("", "", "");
    }
  } catch (e) {
    errors.push(`logins.countLogins: ${e}`);
  }

  // ---- policy messages from the console ----
  const policy_messages = [];
  // "Policies" (capitalised) is the prefix of the policy engine's logger
  // ("Policies", "Enterprise Policies"); a case-insensitive match would also
  // catch unrelated messages such as Telemetry's "privacy policy".
  const mentionsPolicies = s => /Policies/.test(s);
  try {
    const storage = Cc["@mozilla.org/consoleAPI-storage;1"].getService(
      Ci.nsIConsoleAPIStorage
    );
    for (const ev of storage.getEvents()) {
      const args = (ev.arguments || []).map(a => {
        try {
          return typeof a == "string" ? a : JSON.stringify(a) ?? String(a);
        } catch (e) {
          return String(a);
        }
      });
      const text = `${ev.level}: ${ev.prefix ? ev.prefix + ": " : ""}${args.join(" ")}`;
      if (mentionsPolicies(ev.prefix || "") || mentionsPolicies(args.join(" "))) {
        policy_messages.push(text);
      }
    }
  } catch (e) {
    errors.push(`consoleAPI-storage: ${e}`);
  }
  try {
    for (const m of Services.console.getMessageArray() || []) {
      const text = m.message || m.errorMessage || String(m);
      if (mentionsPolicies(text)) {
        policy_messages.push(`console: ${text}`);
      }
    }
  } catch (e) {
    errors.push(`Services.console: ${e}`);
  }

  // ---- open windows (a modal dialog here means something is stuck) ----
  const windows = [];
  for (const w of Services.wm.getEnumerator(null)) {
    windows.push({
      type: maybe(() => w.document.documentElement.getAttribute("windowtype")),
      url: maybe(() => w.document.documentURI),
      title: maybe(() => w.document.title),
    });
  }

  return {
    app: { name: Services.appinfo.name, version: Services.appinfo.version },
    prefs,
    policies_status,
    policies_status_code: policiesStatusCode,
    active_policies,
    accounts,
    servers,
    identities,
    smtp,
    handlers,
    handler_action_codes,
    logins,
    policy_messages,
    windows,
    errors,
  };
})();
