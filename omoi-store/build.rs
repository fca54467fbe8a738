//! Rebuild when a migration is added, not only when one changes (`sqlx::migrate!` embeds them).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
