user_pref("mail.identity.id1.fullName", "Zoë Ünïcødé ✉ 名前");
user_pref("multi", "line
break raw");
