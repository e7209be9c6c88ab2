//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds `migrations/` at compile
//! time, and cargo only notices new files in a folder it was told to watch.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
