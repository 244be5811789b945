// MedArchive clinician UI: small progressive enhancements; every page works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // The language menu applies at once; without script a button does it.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Idle timeout: the server refuses an idle session; leave the patient data off screen too.
  var main = document.getElementById("main");
  var idle = main && parseInt(main.getAttribute("data-idle-seconds") || "0", 10);
  if (idle > 0) {
    var timer;
    var restart = function () {
      clearTimeout(timer);
      timer = setTimeout(function () { window.location.assign("/login?timeout=1"); }, idle * 1000);
    };
    ["keydown", "pointerdown"].forEach(function (name) { document.addEventListener(name, restart); });
    restart();
  }

  // Questionnaire enableWhen: a field that does not apply is hidden and not sent (without
  // script it stays visible and the server ignores it).
  document.querySelectorAll("[data-enable-when]").forEach(function (holder) {
    var conditions = JSON.parse(holder.getAttribute("data-enable-when"));
    var update = function () {
      var on = conditions.every(function (c) {
        var question = document.getElementById(c[0]);
        return question && question.value === c[1];
      });
      holder.hidden = !on;
      holder.querySelectorAll("input, select, textarea").forEach(function (field) {
        field.disabled = !on;
      });
    };
    conditions.forEach(function (c) {
      var question = document.getElementById(c[0]);
      if (question) { question.addEventListener("change", update); }
    });
    update();
  });

  // Form checks before sending: the browser's constraint validation, shown as our messages.
  document.querySelectorAll("form[data-validate]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var first = null;
      form.querySelectorAll("input, select, textarea").forEach(function (field) {
        var holder = field.closest(".field");
        if (!holder) { return; }
        var message = holder.querySelector(".field-error.js-made");
        if (field.checkValidity()) {
          holder.classList.remove("invalid");
          field.removeAttribute("aria-invalid");
          if (message) { message.remove(); }
          return;
        }
        if (!message) {
          message = document.createElement("p");
          message.className = "field-error js-made";
          message.id = field.id + "-client-error";
          holder.appendChild(message);
          field.setAttribute("aria-describedby", message.id);
        }
        message.textContent = field.validationMessage;
        holder.classList.add("invalid");
        field.setAttribute("aria-invalid", "true");
        first = first || field;
      });
      if (first) { event.preventDefault(); first.focus(); }
    });
  });

  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
