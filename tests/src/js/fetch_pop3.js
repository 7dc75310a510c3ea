// Postwarden e2e: trigger "Get Messages" for one POP3 server.
// arguments[0] = {serverKey, password, waitMs}
// The password is only set in memory (server.password), so nothing is stored
// and no password prompt (a modal dialog in headless mode) can appear.
// msgWindow is null: Pop3Client then reports protocol errors to the url
// listener instead of opening an alert.
// Resolves with {started, finished, status} once the fetch finished or after
// waitMs (a TLS handshake against the fake server never finishes).
const { serverKey, password, waitMs } = arguments[0];
return (async () => {
  const { MailServices } = ChromeUtils.importESModule(
    "resource:///modules/MailServices.sys.mjs"
  );
  const server = MailServices.accounts.getIncomingServer(serverKey);
  if (!server) {
    throw new Error(`no incoming server with key ${serverKey}`);
  }
  if (server.type != "pop3") {
    throw new Error(`server ${serverKey} has type ${server.type}, not pop3`);
  }
  server.password = password;
  const inbox = server.rootMsgFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
  if (!inbox) {
    throw new Error(`server ${serverKey} has no Inbox folder`);
  }
  const result = {
    started: false,
    finished: false,
    status: null,
    inbox: inbox.URI,
    socketType: server.socketType,
    leaveMessagesOnServer: server.QueryInterface(Ci.nsIPop3IncomingServer)
      .leaveMessagesOnServer,
  };
  const done = new Promise(resolve => {
    const listener = {
      QueryInterface: ChromeUtils.generateQI(["nsIUrlListener"]),
      OnStartRunningUrl() {
        result.started = true;
      },
      OnStopRunningUrl(url, status) {
        result.finished = true;
        result.status = status;
        resolve();
      },
    };
    MailServices.pop3.GetNewMail(null, listener, inbox, server);
  });
  await Promise.race([done, new Promise(r => setTimeout(r, waitMs))]);
  if (result.finished) {
    result.inboxTotalMessages = inbox.getTotalMessages(false);
  }
  return result;
})();
