/*
 * linux_thp: whether Linux maps a fresh 2 MiB anonymous mapping, written
 * page by page, with one transparent huge page (docs/performance.md). For
 * linux-peer, as /init (nothing is mounted: it mounts sysfs and proc):
 *
 *   gcc -static -O2 bench/linux_thp.c -o /tmp/linux_thp
 *   ../shared/linux-peer /tmp/linux_thp
 *
 * Prints the THP settings, whether the mapping is 2 MiB aligned, its Rss and
 * AnonHugePages from smaps, and pgfault and thp_fault_alloc from vmstat. Not
 * built by make: our kernel has no sysfs and no huge pages.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
static void cat(const char *p){char b[4096];FILE*f=fopen(p,"r");if(!f){printf("%s: cannot open\n",p);return;}size_t n=fread(b,1,sizeof b-1,f);b[n]=0;printf("%s: %s",p,b);fclose(f);}
int main(){
  mkdir("/sys",0555); mkdir("/proc",0555);
  mount("sysfs","/sys","sysfs",0,0); mount("proc","/proc","proc",0,0);
  cat("/sys/kernel/mm/transparent_hugepage/enabled");
  cat("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled");
  char *p=mmap(0,512*4096,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  printf("mmap 2 MiB at %p (2 MiB aligned: %s)\n",p,((unsigned long)p&((2<<20)-1))?"no":"yes");
  for(int i=0;i<512;i++) p[i*4096]=1;
  FILE*f=fopen("/proc/self/smaps","r"); char line[256]; int in=0;
  char want[32]; snprintf(want,sizeof want,"%lx-",(unsigned long)p);
  while(fgets(line,sizeof line,f)){ if(strncmp(line,want,strlen(want))==0) in=1; else if(in && strchr(line,'-') && !strchr(line,':')) in=0; if(in && (strstr(line,"AnonHugePages")||strstr(line,"Rss"))) printf("%s",line);}
  FILE*v=fopen("/proc/vmstat","r"); while(fgets(line,sizeof line,v)) if(strncmp(line,"thp_fault_alloc",15)==0||strncmp(line,"pgfault ",8)==0) printf("%s",line);
  return 0;
}
