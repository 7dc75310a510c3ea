user_pref (	"a",1 ) ;


   user_pref("b",true);   // trailing
