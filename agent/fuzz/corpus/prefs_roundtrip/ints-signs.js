user_pref("i.neg", -2147483648);
user_pref("i.pos", +2147483647);
user_pref("i.big", 9223372036854775807);
user_pref("i.ws", - /* c */ 5);
user_pref("i.zero", 0);
