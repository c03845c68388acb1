// Added to every page by book/_ext/gdsec_a11y.py. Gives the kernel-free widgets accessible names once
// the ipywidgets html-manager has rendered them (it renders after load, so a MutationObserver watches):
// * an explorer view (<img class="widget-image">) gets its text alternative (the title the widget
//   carries, gdsec.widgets.core.DescribedImage) as alt;
// * a slider handle (role="slider") is named after its widget's label and reads out the shown value.
(function () {
  "use strict";
  function set(element, name, value) {
    if (value && element.getAttribute(name) !== value) { element.setAttribute(name, value); }
  }
  function fix(root) {
    root.querySelectorAll("img.widget-image[title]").forEach(function (img) {
      set(img, "alt", img.getAttribute("title").trim());
    });
    root.querySelectorAll(".widget-slider").forEach(function (slider) {
      var label = slider.querySelector(".widget-label");
      var readout = slider.querySelector(".widget-readout");
      var name = label ? label.textContent.trim() : "";
      slider.querySelectorAll('[role="slider"]').forEach(function (handle) {
        set(handle, "aria-label", name || "value");
        if (readout) { set(handle, "aria-valuetext", readout.textContent.trim()); }
      });
    });
  }
  var pending = false;
  function schedule() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fix(document); });
  }
  new MutationObserver(schedule).observe(document.documentElement, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ["title", "aria-valuetext", "class"],
  });
  document.addEventListener("DOMContentLoaded", schedule);
})();
