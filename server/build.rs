//! `sqlx::migrate!` embeds the migration files at compile time, but cargo does not know they are
//! inputs: without this, adding a migration leaves an incremental build with the old list.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
