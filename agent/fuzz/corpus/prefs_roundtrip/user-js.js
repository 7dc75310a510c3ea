// user.js written by an admin
user_pref("mail.server.server1.check_time", 30);
user_pref('mail.identity.id1.reply_to', 'a@example.org');
user_pref("signon.rememberSignons", false);
