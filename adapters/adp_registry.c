/*
 * adp_registry: the list of source plugins kp-adapter is built with. A new source is a new
 * folder (adapters/<name>/src_<name>.c exporting one struct adp_source) plus one line here;
 * nothing else in the runtime changes (STYLE.md "Adapter sources are plugins").
 */
#include <string.h>

#include "adp.h"
#include "csv/src_csv.h"
#include "http/src_http.h"
#include "sql/src_sql.h"

const struct adp_source *const adp_sources[] = {
    &adp_source_sql,
    &adp_source_http,
    &adp_source_csv,
    NULL,
};

const struct adp_source *adp_source_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t k = 0; adp_sources[k]; k++)
        if (strcmp(adp_sources[k]->name, name) == 0)
            return adp_sources[k];
    return NULL;
}
