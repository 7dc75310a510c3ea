//! `sqlx::migrate!` embeds the migration files at compile time and so tracks the files it saw;
//! a migration *added* to a folder would go unnoticed without this (sqlx's own advice).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
