user_pref("a", 1);user_pref("b", 2);
user_pref("c", 3);
