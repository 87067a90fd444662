"""The study site: its own pages, the bilingual checker/splitter and the build (book.build)."""
