//! Desktop notifications for the logged-in user (being written: see the issue 10 brief).
