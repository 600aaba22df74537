//! The task service's API suite: the real router on `127.0.0.1:0`, a real database (SQLite in a
//! temporary directory, and PostgreSQL when `TEST_POSTGRES_URL` is set), real HTTP.

mod support;

mod caching;
mod concurrency;
mod errors;
mod isolation;
mod listing;
mod operations;
mod search;
mod startup;
mod tasks;
mod trust;
