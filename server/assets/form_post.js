// Countersign: posts the answer back to the application (OAuth 2.0 Form Post Response Mode).
"use strict";
(function () {
  const form = document.getElementById("form-post");
  if (form) {
    form.submit();
  }
})();
