//! A small cache of serialized listing pages, so repeated `GET /api/nodes`
//! calls (dashboards polling every few seconds) skip the database.
//!
//! Correctness rests on the store's *generation*: the writing connection
//! bumps it after every operation, once its transaction is committed (and
//! before the writer's answer is sent). A page is cached with the
//! generation read *before* its query ran, and served only while the
//! generation is still that value. So a page can never outlive a write
//! whose 2xx a client has seen: at worst a page is dropped needlessly.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// Pages kept at most; the cache is emptied when it is full.
const MAX_PAGES: usize = 64;
/// Longest query string cached (longer ones are always read afresh).
pub const MAX_KEY_LEN: usize = 256;

/// One cached answer.
#[derive(Debug, Clone)]
pub struct Page {
    pub body: Bytes,
    /// The `Link` header for the next page, if any.
    pub link: Option<String>,
}

/// Listing pages by query string.
#[derive(Debug, Default)]
pub struct PageCache {
    pages: Mutex<HashMap<String, (u64, Page)>>,
}

impl PageCache {
    /// The page for `key`, if cached at `generation`.
    pub fn get(&self, key: &str, generation: u64) -> Option<Page> {
        let pages = crate::slot::lock(&self.pages);
        match pages.get(key) {
            Some((at, page)) if *at == generation => Some(page.clone()),
            _ => None,
        }
    }

    /// Keeps `page` for `key`, as read at `generation`.
    pub fn put(&self, key: &str, generation: u64, page: Page) {
        if key.len() > MAX_KEY_LEN {
            return;
        }
        let mut pages = crate::slot::lock(&self.pages);
        if pages.len() >= MAX_PAGES && !pages.contains_key(key) {
            pages.clear();
        }
        pages.insert(key.to_owned(), (generation, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &'static str) -> Page {
        Page {
            body: Bytes::from_static(text.as_bytes()),
            link: None,
        }
    }

    #[test]
    fn a_page_is_served_only_at_its_generation() {
        let cache = PageCache::default();
        cache.put("limit=5", 7, page("[]"));
        assert!(cache.get("limit=5", 7).is_some());
        assert!(cache.get("limit=5", 8).is_none());
        assert!(cache.get("limit=6", 7).is_none());
    }

    #[test]
    fn size_is_bounded() {
        let cache = PageCache::default();
        for i in 0..1000 {
            cache.put(&format!("after=n{i}"), 1, page("[]"));
        }
        assert!(cache.pages.lock().unwrap().len() <= MAX_PAGES);
        cache.put(&"x".repeat(MAX_KEY_LEN + 1), 1, page("[]"));
        assert!(cache.get(&"x".repeat(MAX_KEY_LEN + 1), 1).is_none());
    }
}
