/* /etc/thunderbird/pref/site.js */
pref("mail.check_all_imap_folders_for_new", true, locked);
sticky_pref("mail.spam.version", 1);
pref("a.b", "x", sticky, locked);
lockPref("mailnews.start_page.enabled", false);
defaultPref("app.update.auto", false);
# hash comment
