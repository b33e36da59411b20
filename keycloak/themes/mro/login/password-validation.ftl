<#--
  keycloak.v2's password-validation.ftl (Keycloak 26.5), imported by the registration and the
  update-password pages, with the realm's password rules added: `templates` renders them from the
  realm's password policy (the passwordPolicies bean), so they show before the first submit and
  follow the policy; `script` moves them under the password field and links them to it.
-->
<#macro rules>
    <#assign policy = passwordPolicies>
    <div id="mro-password-rules" class="${properties.kcFormHelperTextClass!}">
        <p>${msg("mroPasswordRulesTitle")}:</p>
        <ul>
            <#if policy.length??><li>${msg("mroPasswordRuleLength", policy.length?c)}</li></#if>
            <#if policy.maxLength??><li>${msg("mroPasswordRuleMaxLength", policy.maxLength?c)}</li></#if>
            <#if policy.lowerCase??><li>${msg("mroPasswordRuleLowerCase", policy.lowerCase?c)}</li></#if>
            <#if policy.upperCase??><li>${msg("mroPasswordRuleUpperCase", policy.upperCase?c)}</li></#if>
            <#if policy.digits??><li>${msg("mroPasswordRuleDigits", policy.digits?c)}</li></#if>
            <#if policy.specialChars??><li>${msg("mroPasswordRuleSpecialChars", policy.specialChars?c)}</li></#if>
            <#if policy.notUsername><li>${msg("mroPasswordRuleNotUsername")}</li></#if>
            <#if policy.notEmail><li>${msg("mroPasswordRuleNotEmail")}</li></#if>
            <#if policy.passwordHistory??><li>${msg("mroPasswordRulePasswordHistory", policy.passwordHistory?c)}</li></#if>
        </ul>
    </div>
</#macro>

<#macro templates>
    <#if passwordPolicies??><@rules/></#if>
    <template id="errorTemplate">
        <div class="${properties.kcFormHelperTextClass}" aria-live="polite">
            <div class="${properties.kcInputHelperTextClass}">
                <div class="${properties.kcInputHelperTextItemClass} ${properties.kcError}">
                    <ul class="${properties.kcInputErrorMessageClass}">
                    </ul>
                </div>
            </div>
        </div>
    </template>
    <template id="errorItemTemplate">
        <li></li>
    </template>
</#macro>

<#macro script field="">
    <script type="module">
        <#outputformat "JavaScript">
        import { validatePassword } from "${url.resourcesPath}/js/password-policy.js";

        const activePolicies = [
            { name: "length", policy: { value: ${passwordPolicies.length!-1}, error: ${msg('invalidPasswordMinLengthMessage')?c} } },
            { name: "maxLength", policy: { value: ${passwordPolicies.maxLength!-1}, error: ${msg('invalidPasswordMaxLengthMessage')?c} } },
            { name: "lowerCase", policy: { value: ${passwordPolicies.lowerCase!-1}, error: ${msg('invalidPasswordMinLowerCaseCharsMessage')?c} } },
            { name: "upperCase", policy: { value: ${passwordPolicies.upperCase!-1}, error: ${msg('invalidPasswordMinUpperCaseCharsMessage')?c} } },
            { name: "digits", policy: { value: ${passwordPolicies.digits!-1}, error: ${msg('invalidPasswordMinDigitsMessage')?c} } },
            { name: "specialChars", policy: { value: ${passwordPolicies.specialChars!-1}, error: ${msg('invalidPasswordMinSpecialCharsMessage')?c} } }
        ].filter(p => p.policy.value !== -1);

        const rules = document.getElementById("mro-password-rules");
        const passwordGroup = document.getElementById("${field}")?.closest(".${properties.kcFormGroupClass?split(" ")[0]}");
        if (rules && passwordGroup) {
            passwordGroup.after(rules);
            document.getElementById("${field}").setAttribute("aria-describedby", "mro-password-rules");
        }

        document.getElementById("${field}").addEventListener("change", (event) => {

            const errorContainer = document.getElementById("input-error-container-${field}");
            const template = document.querySelector("#errorTemplate").content.cloneNode(true);
            const errors = validatePassword(event.target.value, activePolicies);

            if (errors.length === 0) {
                errorContainer.replaceChildren();
                return;
            }

            const errorList = template.querySelector("ul");
            const htmlErrors = errors.forEach((e) => {
                const row = document.querySelector("#errorItemTemplate").content.cloneNode(true);
                const li = row.querySelector("li");
                li.textContent = e;
                errorList.appendChild(li);
            });
            errorContainer.replaceChildren(template);
        });
    </#outputformat>
    </script>
</#macro>