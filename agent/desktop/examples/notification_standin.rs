//! A stand-in desktop notification server for the tests: a real D-Bus service that owns
//! `org.freedesktop.Notifications` on the bus at BUS_ADDRESS and appends every `Notify` call,
//! with what the bus and `/proc` say about the caller, as one JSON line to RECORD_FILE.
//!
//! ```text
//! notification_standin BUS_ADDRESS RECORD_FILE [--hang] [--no-markup]
//! ```
//!
//! `--hang`: `Notify` records the call and never answers (a hung server). `--no-markup`:
//! `GetCapabilities` leaves out `body-markup`.

#[cfg(target_os = "linux")]
mod standin {
    use std::collections::{BTreeMap, HashMap};
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::PathBuf;

    use serde_json::json;
    use zbus::message::Header;
    use zbus::{interface, Connection, OwnedVariant};

    pub struct Options {
        pub address: String,
        pub record: PathBuf,
        pub hang: bool,
        pub markup: bool,
    }

    struct Notifications {
        record: PathBuf,
        hang: bool,
        markup: bool,
        last_id: u32,
    }

    fn failed(e: impl std::fmt::Display) -> zbus::fdo::Error {
        zbus::fdo::Error::Failed(e.to_string())
    }

    async fn bus_says<T>(conn: &Connection, method: &str, sender: &str) -> zbus::fdo::Result<T>
    where
        T: for<'d> serde::Deserialize<'d> + zbus::Type,
    {
        let reply = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                method,
                &(sender,),
            )
            .await
            .map_err(failed)?;
        reply.body().deserialize().map_err(failed)
    }

    /// The caller's credentials as the kernel has them, while it waits for the answer.
    fn process(pid: u32) -> serde_json::Value {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let fields: BTreeMap<&str, &str> = status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| {
                matches!(
                    *k,
                    "Uid"
                        | "Gid"
                        | "Groups"
                        | "NoNewPrivs"
                        | "CapInh"
                        | "CapPrm"
                        | "CapEff"
                        | "CapAmb"
                )
            })
            .map(|(k, v)| (k, v.trim()))
            .collect();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let mut env: Vec<String> = environ
            .split(|&b| b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        env.sort();
        json!({ "status": fields, "env": env })
    }

    #[interface(name = "org.freedesktop.Notifications")]
    impl Notifications {
        async fn get_capabilities(&self) -> Vec<String> {
            let mut caps = vec!["body".to_owned()];
            if self.markup {
                caps.push("body-markup".to_owned());
            }
            caps
        }

        #[zbus(out_args("name", "vendor", "version", "spec_version"))]
        async fn get_server_information(&self) -> (String, String, String, String) {
            (
                "postwarden-standin".into(),
                "Postwarden tests".into(),
                "1".into(),
                "1.2".into(),
            )
        }

        async fn close_notification(&self, _id: u32) {}

        #[allow(clippy::too_many_arguments)]
        async fn notify(
            &mut self,
            app_name: String,
            replaces_id: u32,
            app_icon: String,
            summary: String,
            body: String,
            actions: Vec<String>,
            hints: HashMap<String, OwnedVariant>,
            expire_timeout: i32,
            #[zbus(header)] header: Header<'_>,
            #[zbus(connection)] conn: &Connection,
        ) -> zbus::fdo::Result<u32> {
            let sender = header
                .sender()
                .ok_or_else(|| failed("a call without a sender"))?
                .to_string();
            let uid: u32 = bus_says(conn, "GetConnectionUnixUser", &sender).await?;
            let pid: u32 = bus_says(conn, "GetConnectionUnixProcessID", &sender).await?;
            let hints: BTreeMap<String, String> = hints
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            let record = json!({
                "app_name": app_name,
                "replaces_id": replaces_id,
                "app_icon": app_icon,
                "summary": summary,
                "body": body,
                "actions": actions,
                "hints": hints,
                "expire_timeout": expire_timeout,
                "caller_uid": uid,
                "caller": process(pid),
            });
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.record)
                .map_err(failed)?;
            writeln!(file, "{record}").map_err(failed)?;
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.last_id += 1;
            Ok(self.last_id)
        }
    }

    pub fn serve(options: Options) -> zbus::Result<()> {
        zbus::block_on(async {
            let server = Notifications {
                record: options.record,
                hang: options.hang,
                markup: options.markup,
                last_id: 0,
            };
            let _conn = zbus::connection::Builder::address(options.address.as_str())
                .name("org.freedesktop.Notifications")
                .serve_at("/org/freedesktop/Notifications", server)
                .build()
                .await?;
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(address), Some(record)) = (args.first(), args.get(1)) else {
        eprintln!("usage: notification_standin BUS_ADDRESS RECORD_FILE [--hang] [--no-markup]");
        return std::process::ExitCode::from(2);
    };
    let options = standin::Options {
        address: address.clone(),
        record: record.into(),
        hang: args[2..].iter().any(|a| a == "--hang"),
        markup: !args[2..].iter().any(|a| a == "--no-markup"),
    };
    match standin::serve(options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notification_standin: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("notification_standin: a session bus service, for the Linux tests");
    std::process::ExitCode::FAILURE
}
