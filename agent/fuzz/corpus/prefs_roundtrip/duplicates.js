user_pref("dup", 1);
pref("dup", 2);
user_pref("dup", 3); user_pref("other", true); user_pref("dup", "x");
