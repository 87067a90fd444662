// The language switch: a link from this page to its sibling in the other language.
// The sibling comes from <link rel="alternate" hreflang> (written at build time), so the
// switch works on any host and at any depth. The choice is remembered in localStorage;
// the site's landing page (index.html) reads it to open the reader's language.
(function () {
  "use strict";
  var KEY = "minimind-course-lang"; // also read by the landing page
  var LABELS = { zh: "中文", en: "English" };

  function remember(lang) {
    try {
      window.localStorage.setItem(KEY, lang);
    } catch (e) {
      // storage can be disabled (private mode, strict settings): the link still works
    }
  }

  function build() {
    var meta = document.querySelector('meta[name="site-lang"]');
    var alt = document.querySelector('link[rel="alternate"][hreflang]');
    if (!meta || !alt || document.querySelector(".lang-switch")) return;
    var here = meta.getAttribute("content");
    var there = alt.getAttribute("hreflang");

    var box = document.createElement("div");
    box.className = "lang-switch";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "语言 / Language");

    var current = document.createElement("span");
    current.className = "lang-switch-current";
    current.setAttribute("aria-current", "true");
    current.textContent = LABELS[here] || here;

    var link = document.createElement("a");
    link.className = "lang-switch-link";
    link.href = alt.getAttribute("href");
    link.hreflang = there;
    link.lang = there;
    link.textContent = LABELS[there] || there;
    link.addEventListener("click", function () {
      remember(there);
    });

    box.appendChild(current);
    box.appendChild(link);
    var header = document.querySelector(".article-header-buttons");
    if (header) {
      header.insertBefore(box, header.firstChild);
    } else {
      box.classList.add("lang-switch-floating");
      document.body.appendChild(box);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", build);
  } else {
    build();
  }
})();
