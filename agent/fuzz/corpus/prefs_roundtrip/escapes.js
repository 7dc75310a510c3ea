user_pref("esc.quote", "say \"hi\" \\ C:\\Mail");
user_pref("esc.single", 'it\'s');
user_pref("esc.nl", "line1\nline2\r");
user_pref("esc.x", "\x41\xC3\xA9");
user_pref("esc.u", "\u00e9\ud83d\ude00");
user_pref("esc.nul", "a\u0000b");
user_pref("\x61", "same name as a");
