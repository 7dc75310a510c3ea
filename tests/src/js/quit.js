// Postwarden e2e: force-quit Thunderbird after this script has returned,
// so Marionette can still send the response.
Services.tm.dispatchToMainThread(() => {
  Services.startup.quit(Ci.nsIAppStartup.eForceQuit);
});
return true;
