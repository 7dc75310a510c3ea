//! The `notify-user` helper on its own, as `postwarden-agent notify-user` runs it: one JSON
//! message on standard input, one JSON answer on standard output. The tests run this binary
//! as the helper of `DesktopNotifier`.

fn main() -> std::process::ExitCode {
    postwarden_desktop::notify_user_main()
}
