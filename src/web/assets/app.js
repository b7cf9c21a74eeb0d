// wfe web view: see src/web/assets.rs
