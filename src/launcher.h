/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher: one delivery worker for every database where edusync
 *	  is installed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EDUSYNC_LAUNCHER_H
#define EDUSYNC_LAUNCHER_H

extern void LauncherRegister(void);

#endif							/* EDUSYNC_LAUNCHER_H */
