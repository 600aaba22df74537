//! `sqlx::migrate!` embeds `migrations/` when the crate compiles; this makes a change there
//! (a new or edited migration) rebuild the crate, as sqlx's documentation advises.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
