// Crossroads website: theme toggle, copy buttons, keyboard navigation of tabs.
// Every page works without this file; it only adds comfort.
(function () {
  "use strict";

  var THEME_KEY = "crossroads-theme";
  var root = document.documentElement;

  // -- theme: data-theme on <html>, remembered in localStorage and a cookie (the server
  //    renders the attribute from the cookie, so a page never flashes the other theme).
  function systemTheme() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches
      ? "dark"
      : "light";
  }

  function storedTheme() {
    try {
      var value = window.localStorage.getItem(THEME_KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch (e) {
      return null;
    }
  }

  function currentTheme() {
    var attr = root.getAttribute("data-theme");
    return attr === "light" || attr === "dark" ? attr : systemTheme();
  }

  function labelToggle(button) {
    var next = currentTheme() === "dark" ? "light" : "dark";
    button.setAttribute("aria-label", "Switch to " + next + " theme");
    button.setAttribute("title", "Switch to " + next + " theme");
  }

  function applyTheme(theme) {
    root.setAttribute("data-theme", theme);
    try {
      window.localStorage.setItem(THEME_KEY, theme);
    } catch (e) {
      /* storage disabled: the cookie still remembers */
    }
    document.cookie = "theme=" + theme + "; path=/; max-age=31536000; SameSite=Lax";
  }

  function setUpTheme() {
    var stored = storedTheme();
    if (stored && !root.hasAttribute("data-theme")) {
      applyTheme(stored);
    }
    var buttons = document.querySelectorAll("[data-theme-toggle]");
    buttons.forEach(function (button) {
      button.hidden = false;
      labelToggle(button);
      button.addEventListener("click", function () {
        applyTheme(currentTheme() === "dark" ? "light" : "dark");
        buttons.forEach(labelToggle);
      });
    });
  }

  // -- copy buttons: <button data-copy="#element-id"> copies that element's text;
  //    any other value of data-copy is copied as it is.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
      document.body.removeChild(area);
      if (ok) {
        resolve();
      } else {
        reject(new Error("copy refused"));
      }
    });
  }

  function setUpCopy() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("[data-copy]");
      if (!button) {
        return;
      }
      var spec = button.getAttribute("data-copy") || "";
      var text = spec;
      if (spec.charAt(0) === "#") {
        var target = document.getElementById(spec.slice(1));
        text = target ? target.textContent : "";
      }
      var label = button.textContent;
      copyText(text).then(
        function () {
          button.textContent = "Copied";
          button.setAttribute("aria-live", "polite");
          window.setTimeout(function () {
            button.textContent = label;
          }, 1500);
        },
        function () {
          button.textContent = "Copy failed";
          window.setTimeout(function () {
            button.textContent = label;
          }, 1500);
        }
      );
    });
  }

  // -- tabs: role=tablist of links; arrow keys, Home and End move the focus and follow
  //    the link (each tab is its own page). One tab stop: the selected tab; after a
  //    keyboard move the new page puts the focus back on its selected tab.
  var TAB_FOCUS = "crossroads.tabFocus";

  function setUpTabs() {
    document.querySelectorAll('[role="tablist"]').forEach(function (list) {
      var tabs = Array.prototype.slice.call(list.querySelectorAll('[role="tab"]'));
      tabs.forEach(function (tab) {
        if (tab.getAttribute("aria-selected") !== "true") tab.setAttribute("tabindex", "-1");
      });
      var selected = list.querySelector('[role="tab"][aria-selected="true"]');
      try {
        if (selected && window.sessionStorage.getItem(TAB_FOCUS)) {
          window.sessionStorage.removeItem(TAB_FOCUS);
          selected.focus();
        }
      } catch (error) {
        /* storage unavailable: the focus stays where the browser puts it */
      }
      tabs.forEach(function (tab, index) {
        tab.addEventListener("keydown", function (event) {
          var next = null;
          if (event.key === "ArrowRight" || event.key === "ArrowDown") {
            next = tabs[(index + 1) % tabs.length];
          } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
            next = tabs[(index - 1 + tabs.length) % tabs.length];
          } else if (event.key === "Home") {
            next = tabs[0];
          } else if (event.key === "End") {
            next = tabs[tabs.length - 1];
          }
          if (!next) {
            return;
          }
          event.preventDefault();
          next.focus();
          if (next.href) {
            try {
              window.sessionStorage.setItem(TAB_FOCUS, "1");
            } catch (error) {
              /* storage unavailable */
            }
            window.location.assign(next.href);
          }
        });
      });
    });
  }

  function start() {
    setUpTheme();
    setUpCopy();
    setUpTabs();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
